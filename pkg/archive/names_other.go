//go:build !unix

package archive

import (
	"errors"
	"path/filepath"
)

// checkComponent reports why this system cannot hold a file called c (one
// path component that passed checkName): filepath.Localize refuses names
// Windows reserves (NUL, CON, ...), ":" and "\" (a separator here) and
// invalid UTF-8.
func checkComponent(c string) error {
	if _, err := filepath.Localize(c); err != nil {
		return errors.New("not a valid file name on this system")
	}
	return nil
}
