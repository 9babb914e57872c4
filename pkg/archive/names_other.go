//go:build !unix

package archive

import (
	"errors"
	"path/filepath"
	"unicode/utf16"
)

// nameMax is the longest file name (one path component) on Windows
// filesystems, in UTF-16 code units.
const nameMax = 255

// checkComponent reports why this system cannot hold a file called c (one
// path component that passed checkName): filepath.Localize refuses names
// Windows reserves (NUL, CON, ...), ":" and "\" (a separator here) and
// invalid UTF-8; and a name may not be longer than nameMax.
func checkComponent(c string) error {
	if _, err := filepath.Localize(c); err != nil {
		return errors.New("not a valid file name on this system")
	}
	if len(utf16.Encode([]rune(c))) > nameMax {
		return errors.New("a file name longer than 255 UTF-16 code units")
	}
	return nil
}
