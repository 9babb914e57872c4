package archive

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRemoveParallel checks the parallel removal alone, without removeTree's
// fallback to os.RemoveAll.
func TestRemoveParallel(t *testing.T) {
	mtime := time.Unix(1_600_000_000, 0)
	for _, tc := range []struct {
		name string
		make func(t *testing.T, p, outside string)
	}{
		{"missing", func(*testing.T, string, string) {}},
		{"a file", func(t *testing.T, p, _ string) { writeFile(t, p, "x", 0o444, mtime) }},
		{"a symlink to a directory", func(t *testing.T, p, outside string) { mustSymlink(t, outside, p) }},
		{"an empty directory", func(t *testing.T, p, _ string) {
			if err := os.Mkdir(p, 0o555); err != nil {
				t.Fatal(err)
			}
		}},
		{"a deep read-only tree with links out", func(t *testing.T, p, outside string) {
			for i := range 300 {
				writeFile(t, filepath.Join(p, fmt.Sprintf("d%d/e%d/f%d", i%7, i%13, i)), "content", 0o444, mtime)
			}
			for i := range 20 {
				d := filepath.Join(p, fmt.Sprintf("deep%d", i))
				for j := range 12 {
					d = filepath.Join(d, fmt.Sprint(j))
				}
				writeFile(t, filepath.Join(d, "leaf"), "leaf", 0o600, mtime)
			}
			mustSymlink(t, outside, filepath.Join(p, "d0/to-outside"))
			mustSymlink(t, filepath.Join(outside, "keep.txt"), filepath.Join(p, "d1/to-outside-file"))
			if err := os.Mkdir(filepath.Join(p, "empty"), 0o700); err != nil {
				t.Fatal(err)
			}
			// Read-only directories, deepest first (the walk is lexical).
			var dirs []string
			_ = filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, q)
				}
				return nil
			})
			for i := len(dirs) - 1; i >= 0; i-- {
				mode := fs.FileMode(0o555)
				if i%5 == 1 {
					mode = 0o500
				}
				if err := os.Chmod(dirs[i], mode); err != nil {
					t.Fatal(err)
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tempDir(t)
			outside := filepath.Join(dir, "outside")
			writeFile(t, filepath.Join(outside, "keep.txt"), "keep", 0o644, mtime)
			before := snapshot(t, outside)
			p := filepath.Join(dir, "tree")
			tc.make(t, p, outside)
			if err := removeParallel(p, 4); err != nil {
				t.Fatal(err)
			}
			if err := removeParallel(p, 4); err != nil {
				t.Errorf("removing it again: %v", err)
			}
			if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s still there: %v", p, err)
			}
			if got := snapshot(t, outside); got != before {
				t.Errorf("outside changed:\n%s\nwant:\n%s", got, before)
			}
		})
	}
}
