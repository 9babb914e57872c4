package archive

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// stagedTarget is the private staging area of one target T:
//
//	<dir(T)>/.<base(T)>.s3-cache-staging-<random>/       staging (0o700)
//	<dir(T)>/.<base(T)>.s3-cache-staging-<random>/root  the extracted content
//
// It is in the same directory as T, hence on the same filesystem, so that the
// swap is a rename.
type stagedTarget struct {
	target  string // absolute path the content must end up at
	staging string // the private directory
	root    string // staging/root: the extracted entry "i"
	// old is where swapIn moved the previous content of target, "" if target
	// did not exist or the previous content was put back.
	old     string
	swapped bool // root is at target
}

// newStagedTarget creates the staging directory for target, and the parent
// directory of target if it is missing.
func newStagedTarget(target string) (*stagedTarget, error) {
	parent, base := filepath.Dir(target), filepath.Base(target)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("create parent of %s: %w", target, err)
	}
	// The trailing "*" makes MkdirTemp put its random part at the end, even
	// if base contains a "*".
	staging, err := os.MkdirTemp(parent, "."+base+stagingInfix+"*")
	if err != nil {
		return nil, fmt.Errorf("create staging directory for %s: %w", target, err)
	}
	return &stagedTarget{target: target, staging: staging, root: filepath.Join(staging, "root")}, nil
}

// path returns where the slash-separated rel (already validated) lives in the
// staging area; "" is the root.
func (s *stagedTarget) path(rel string) (string, error) {
	if rel == "" {
		return s.root, nil
	}
	local, err := localize(rel)
	if err != nil {
		return "", err
	}
	return filepath.Join(s.root, local), nil
}

// swapIn puts the staged content at target: target (if it exists) is renamed
// to <dir>/.<base>.s3-cache-old-<random>, then root is renamed to target. On
// failure the previous content is put back.
func (s *stagedTarget) swapIn() error {
	if _, err := os.Lstat(s.target); err == nil {
		old := filepath.Join(filepath.Dir(s.target), "."+filepath.Base(s.target)+oldInfix+rand.Text())
		if err := os.Rename(s.target, old); err != nil {
			return fmt.Errorf("move %s aside: %w", s.target, err)
		}
		s.old = old
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("inspect %s: %w", s.target, err)
	}
	if err := os.Rename(s.root, s.target); err != nil {
		err = fmt.Errorf("move restored content to %s: %w", s.target, err)
		return joinErrors(err, s.restoreOld())
	}
	s.swapped = true
	return nil
}

// swapOut undoes a successful swapIn: the restored content goes back to
// root, the previous content back to target.
func (s *stagedTarget) swapOut() error {
	if !s.swapped {
		return nil
	}
	if err := os.Rename(s.target, s.root); err != nil {
		return fmt.Errorf("undo restore of %s: %w", s.target, err)
	}
	s.swapped = false
	return s.restoreOld()
}

// restoreOld renames the previous content back to target, if it was moved
// aside. If that fails, the error says where the previous content is (it is
// then never removed by this package).
func (s *stagedTarget) restoreOld() error {
	if s.old == "" {
		return nil
	}
	if err := os.Rename(s.old, s.target); err != nil {
		return fmt.Errorf("put the previous content of %s back (it is at %s): %w", s.target, s.old, err)
	}
	s.old = ""
	return nil
}

// removeTree removes path and everything below it, like os.RemoveAll, but
// also when the tree holds read-only directories (Go's module cache is
// 0o555), whose entries cannot be removed: if a first attempt fails, every
// directory is made u+rwx and the removal is retried.
func removeTree(path string) error {
	if err := os.RemoveAll(path); err == nil {
		return nil
	}
	makeDirsWritable(path)
	if err := os.RemoveAll(path); err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// makeDirsWritable adds u+rwx to every directory under root, root included,
// without following symlinks. It is best effort: whatever cannot be fixed
// makes the following removal fail, which reports the problem.
func makeDirsWritable(root string) {
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		// WalkDir calls this for a directory before reading it, so the chmod
		// below makes it readable in time. Errors: skip what cannot be read.
		if err != nil || !d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if perm := info.Mode().Perm(); perm&0o700 != 0o700 {
			_ = os.Chmod(p, perm|0o700) // p is a real directory: WalkDir does not follow symlinks
		}
		return nil
	})
}
