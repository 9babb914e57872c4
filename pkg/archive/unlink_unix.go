//go:build unix

package archive

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// idOfInfo is the identity of the file info describes.
func idOfInfo(info fs.FileInfo) fileID {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}
	}
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}
}

// openListDir opens the directory p to list its entries, making sure it is
// the directory want identifies: not a symlink in its last component, and
// not another directory reached through a component replaced by a symlink
// since want was read.
func openListDir(p string, want fileID) (*os.File, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	info, err := f.Stat()
	if err == nil && idOfInfo(info) != want {
		err = fmt.Errorf("open %s: replaced while it was being removed", p)
	}
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}

// subdirID returns the identity of the entry name of the directory open as
// dir, and whether it is a directory, without following a symlink.
func subdirID(dir *os.File, name string) (fileID, bool, error) {
	var st unix.Stat_t
	for {
		err := unix.Fstatat(int(dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fileID{}, false, &os.PathError{Op: "lstat", Path: filepath.Join(dir.Name(), name), Err: err}
		}
		return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, st.Mode&unix.S_IFMT == unix.S_IFDIR, nil
	}
}

// unlinkIn removes the entry name (not a directory) of the directory open as
// dir: relative to the descriptor, so never through a replaced component.
func unlinkIn(dir *os.File, name string) error {
	for {
		err := unix.Unlinkat(int(dir.Fd()), name, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "unlink", Path: filepath.Join(dir.Name(), name), Err: err}
		}
		return nil
	}
}
