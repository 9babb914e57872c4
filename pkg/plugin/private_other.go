//go:build !unix

package plugin

import "io/fs"

// owner returns the uid that owns a file, and whether the platform tells: not here (Windows
// keeps the temp directory in the user's profile, out of other users' reach).
func owner(fs.FileInfo) (int, bool) { return -1, false }
