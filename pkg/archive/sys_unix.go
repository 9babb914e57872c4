//go:build unix

package archive

import (
	"io/fs"
	"syscall"
)

// openNoFollow makes OpenFile fail instead of following a symlink in the
// last path component.
const openNoFollow = syscall.O_NOFOLLOW

// openReadFlags are added when Write opens a file to archive: never follow a
// symlink that replaced the file since the walk saw it, and never block on a
// FIFO that did.
const openReadFlags = syscall.O_NOFOLLOW | syscall.O_NONBLOCK

// fileID identifies an inode: the same fileID means the same file.
type fileID struct {
	dev, ino uint64
}

// hardLinkID returns the inode identity of a file that has more than one
// name (a hard link count above 1), and false for a file with a single name.
func hardLinkID(info fs.FileInfo) (fileID, bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok || st.Nlink <= 1 {
		return fileID{}, false
	}
	// The field types differ between operating systems, hence the conversions.
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, true
}
