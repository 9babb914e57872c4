//go:build !unix

package archive

import (
	"io/fs"
	"os"
	"path/filepath"
)

// Outside unix files have no identity here: the checks below trust the
// listing.
func idOfInfo(fs.FileInfo) fileID { return fileID{} }

func openListDir(p string, _ fileID) (*os.File, error) { return os.Open(p) }

func subdirID(*os.File, string) (fileID, bool, error) { return fileID{}, true, nil }

func unlinkIn(dir *os.File, name string) error { return os.Remove(filepath.Join(dir.Name(), name)) }
