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
	for i, m := range modes {
		for _, size := range []int{10, maxPooledFile + 10} {
			mtime := time.Unix(1_600_000_000+int64(i), int64(i)*111_111_111+int64(size%7))
			writeFile(t, filepath.Join(src, fmt.Sprintf("%04o-%d", m, size)), string(make([]byte, size)), m, mtime)
		}
	}
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
			for i, m := range modes {
				for _, size := range []int{10, maxPooledFile + 10} {
					p := filepath.Join(target, fmt.Sprintf("%04o-%d", m, size))
					info, err := os.Lstat(p)
					if err != nil {
						t.Fatal(err)
					}
					if got, want := info.Mode(), m&fs.ModePerm; got != want {
						t.Errorf("%s: mode %v, want %v", p, got, want)
					}
					mtime := time.Unix(1_600_000_000+int64(i), int64(i)*111_111_111+int64(size%7))
					if !info.ModTime().Equal(mtime) {
						t.Errorf("%s: mtime %v, want %v", p, info.ModTime(), mtime)
					}
				}
			}
		})
	}
}
