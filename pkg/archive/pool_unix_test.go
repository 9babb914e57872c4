//go:build unix

package archive

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestExtractModesAndMtimesUnderUmask checks that files get exactly their
// recorded permission bits and mtime whatever the umask, whether a writer
// (small files) or the reader (large ones) writes them. Not parallel: the
// umask is the process's.
func TestExtractModesAndMtimesUnderUmask(t *testing.T) {
	modes := []fs.FileMode{0o444, 0o755, 0o600, 0o777, 0o640, 0o400, 0o2755}
	tmp := tempDir(t)
	src := filepath.Join(tmp, "src")
	mtime := func(i, size int) time.Time {
		return time.Unix(1_600_000_000+int64(i), int64(i)*111_111_111+int64(size%7))
	}
	writeModeFiles(t, src, modes, mtime)
	data, _ := mustWrite(t, []string{src}, Zstd, 0, nil)
	for _, mask := range []int{0o077, 0o022, 0o000, 0o027} {
		t.Run(fmt.Sprintf("umask %04o", mask), func(t *testing.T) {
			target := filepath.Join(tempDir(t), "target")
			old := syscall.Umask(mask)
			u := readUmask()
			_, err := Extract(context.Background(), bytes.NewReader(data), []string{target}, Zstd, nil)
			syscall.Umask(old)
			if u.known && u.bits != fs.FileMode(mask) {
				t.Errorf("readUmask = %04o, want %04o", u.bits, mask)
			}
			if err != nil {
				t.Fatal(err)
			}
			assertSameTree(t, src, target)
			eachModeFile(target, modes, func(p string, i int, m fs.FileMode, size int) {
				info, err := os.Lstat(p)
				if err != nil {
					t.Fatal(err)
				}
				if got, want := info.Mode(), m&fs.ModePerm; got != want {
					t.Errorf("%s: mode %v, want %v", p, got, want)
				}
				if want := mtime(i, size); !info.ModTime().Equal(want) {
					t.Errorf("%s: mtime %v, want %v", p, info.ModTime(), want)
				}
			})
		})
	}
}

// writeModeFiles writes, for each of modes, a file the writer pool restores (10 bytes) and one
// the reader streams itself (over maxPooledFile), dated mtime(index of the mode, size).
func writeModeFiles(t *testing.T, dir string, modes []fs.FileMode, mtime func(i, size int) time.Time) {
	t.Helper()
	eachModeFile(dir, modes, func(p string, i int, m fs.FileMode, size int) {
		writeFile(t, p, string(make([]byte, size)), m, mtime(i, size))
	})
}

// eachModeFile calls f with the path under dir, the index of the mode, the mode and the size of
// each file writeModeFiles makes.
func eachModeFile(dir string, modes []fs.FileMode, f func(p string, i int, m fs.FileMode, size int)) {
	for i, m := range modes {
		for _, size := range []int{10, maxPooledFile + 10} {
			f(filepath.Join(dir, fmt.Sprintf("%04o-%d", m, size)), i, m, size)
		}
	}
}
