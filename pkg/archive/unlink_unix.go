//go:build unix

package archive

import (
	"os"
	"syscall"
)

// unlinkFile removes the file (not directory) p with one unlink(2).
// (os.Remove tries rmdir(2) after unlink(2) fails.)
func unlinkFile(p string) error {
	for {
		err := syscall.Unlink(p)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "unlink", Path: p, Err: err}
		}
		return nil
	}
}
