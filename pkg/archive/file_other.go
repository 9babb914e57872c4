//go:build !linux

package archive

import (
	"io/fs"
	"os"
	"time"
)

// outFile is a regular file being extracted.
type outFile struct {
	f    *os.File
	path string
	mode fs.FileMode
}

// createFile creates the regular file p, writable; finish gives it its
// mode. O_EXCL: never reuse an existing file or symlink. O_NOFOLLOW (unix):
// belt and braces against a symlink in the last component.
func createFile(p string, mode fs.FileMode) (*outFile, error) {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|openNoFollow, 0o600)
	if err != nil {
		return nil, err
	}
	return &outFile{f: f, path: p, mode: mode}, nil
}

// Write writes all of b.
func (f *outFile) Write(b []byte) (int, error) { return f.f.Write(b) }

// finish applies the mode on the open descriptor, closes the file, then
// sets its mtime unless zero.
func (f *outFile) finish(mtime time.Time, _ umask) error {
	err := f.f.Chmod(f.mode.Perm())
	if cerr := f.f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err == nil && !mtime.IsZero() {
		// The regular file just created in our private staging directory
		// (O_EXCL), not a symlink.
		err = os.Chtimes(f.path, time.Time{}, mtime)
	}
	return err
}

// abandon closes the file after a failure.
func (f *outFile) abandon() { _ = f.f.Close() }

// umask is not used here: finish always sets the mode.
type umask struct {
	bits  fs.FileMode
	known bool
}

func readUmask() umask { return umask{} }

func fileUmask(u umask, _ string) umask { return u }

// inFile is a regular file being archived.
type inFile = os.File

// willNeed does nothing here.
func willNeed(*inFile, int64) {}

// openFile opens p to archive it, with openReadFlags.
func openFile(p string) (*inFile, error) {
	return os.OpenFile(p, os.O_RDONLY|openReadFlags, 0)
}
