//go:build unix

package plugin

import (
	"io/fs"
	"syscall"
)

// owner returns the uid that owns a file, and whether the platform tells.
func owner(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return -1, false
	}
	return int(st.Uid), true
}
