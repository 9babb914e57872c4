package plugin

// Why a file: the state directory must be this user's alone; these checks say so or refuse.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// stateDir is where this user's state files live: a directory of its own in the temp directory,
// <TMPDIR>/s3-cache-<uid>, because names in a shared /tmp can be taken first by another user.
func stateDir() string {
	name := "s3-cache-state"
	if uid := os.Getuid(); uid >= 0 { // -1 on Windows, whose temp directory is per-user already
		name = fmt.Sprintf("s3-cache-%d", uid)
	}
	return filepath.Join(os.TempDir(), name)
}

// privateDir checks that dir is a directory of this user's that no one else can write to: not a
// symlink, owned by this user, mode 0700. With create, a missing dir is made so. Like tmux and
// ssh, it refuses anything else rather than repair it: someone else may have made it.
func privateDir(dir string, create bool) error {
	if create {
		err := os.Mkdir(dir, 0o700)
		if err == nil {
			err = os.Chmod(dir, 0o700) // whatever the umask
		}
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create private directory %s: %w", dir, err)
		}
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("check private directory: %w", err)
	}
	return checkPrivate(dir, fi, true)
}

// checkPrivate refuses, with an error saying why, a file (or with isDir a directory) that is a
// symlink, of another kind, not owned by this user, or (a directory) open to others.
func checkPrivate(path string, fi fs.FileInfo, isDir bool) error {
	kind := "regular file"
	if isDir {
		kind = "directory"
	}
	switch uid, known := owner(fi); {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("refusing %s: it is a symlink, not a %s of this user's; remove it", path, kind)
	case isDir != fi.IsDir() || (!isDir && !fi.Mode().IsRegular()):
		return fmt.Errorf("refusing %s: it is not a %s; remove it", path, kind)
	case known && uid != os.Getuid():
		return fmt.Errorf("refusing %s: it is owned by uid %d, not by this user (uid %d); remove it", path, uid, os.Getuid())
	case known && isDir && fi.Mode().Perm() != 0o700:
		return fmt.Errorf("refusing %s: its mode is %04o, want 0700 (only this user may use it); remove it", path, fi.Mode().Perm())
	}
	return nil
}
