//go:build !unix

package archive

import "io/fs"

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
