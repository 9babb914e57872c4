//go:build !unix

package archive

import "os"

// unlinkFile removes the file (not directory) p.
func unlinkFile(p string) error { return os.Remove(p) }
