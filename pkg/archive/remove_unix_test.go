//go:build unix

package archive

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// A directory of the tree being removed that is replaced by a symlink while
// the removal runs (the last component, or one above it) is never followed:
// nothing outside the tree is deleted. (The previous content of a target
// may be writable by a process the restore does not control.)
func TestRemoveParallelNeverFollowsASwappedDirectory(t *testing.T) {
	mtime := time.Unix(1_600_000_000, 0)
	for _, tc := range []struct {
		name    string
		swapped string // replaced by a symlink to outside...
		when    string // ...just before this directory is listed
	}{
		{"the directory itself", "a/b", "a/b"},
		{"its parent", "a", "a/b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tempDir(t)
			outside := filepath.Join(dir, "outside")
			writeFile(t, filepath.Join(outside, "keep.txt"), "keep", 0o644, mtime)
			writeFile(t, filepath.Join(outside, "b", "keep.txt"), "keep", 0o644, mtime)
			before := snapshot(t, outside)
			p := filepath.Join(dir, "tree")
			writeFile(t, filepath.Join(p, "a", "b", "x"), "x", 0o644, mtime)
			writeFile(t, filepath.Join(p, "a", "y"), "y", 0o644, mtime)

			var once sync.Once
			r := &remover{beforeList: func(d string) {
				if d != filepath.Join(p, tc.when) {
					return
				}
				once.Do(func() {
					s := filepath.Join(p, tc.swapped)
					if err := os.Rename(s, filepath.Join(dir, "moved")); err != nil {
						t.Error(err)
					}
					target := outside
					if tc.swapped == "a/b" {
						target = filepath.Join(outside, "b")
					}
					if err := os.Symlink(target, s); err != nil {
						t.Error(err)
					}
				})
			}}
			_ = r.run(p, 4) // it may fail: the tree changed under it
			if got := snapshot(t, outside); got != before {
				t.Errorf("the removal deleted outside the tree:\nbefore:\n%s\nafter:\n%s", before, got)
			}
		})
	}
}
