//go:build !unix

package archive

import (
	"fmt"
	"io/fs"
	"os"
)

// openNoFollow is not available outside unix; O_EXCL still guarantees that an
// existing file or symlink is never opened for writing.
const openNoFollow = 0

// openReadFlags are added when Write opens a file to archive.
const openReadFlags = 0

// fileID identifies an inode. Outside unix there is no hard-link detection.
type fileID struct{}

// hardLinkID always reports false: every name is stored as its own file.
func hardLinkID(fs.FileInfo) (fileID, bool) {
	return fileID{}, false
}

// checkOwner accepts any regular file: ownership is not checked here.
func checkOwner(info fs.FileInfo) error {
	if !info.Mode().IsRegular() {
		return fmt.Errorf("it is a %v, not a regular file", info.Mode().Type())
	}
	return nil
}

// otherDevice cannot tell here.
func otherDevice(fs.FileInfo, fs.FileInfo) bool { return false }

// lockPath cannot lock here: nothing is ever busy. No handle is kept open,
// so that the path can be renamed and removed.
func lockPath(string) (f *os.File, busy bool, err error) { return nil, false, nil }

// isReadOnlyFS cannot tell here.
func isReadOnlyFS(error) bool { return false }

// openAheadLimit is how many files read-ahead may hold open.
func openAheadLimit() int { return readAheadFiles }
