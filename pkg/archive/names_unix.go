//go:build unix

package archive

import (
	"errors"
	"runtime"
	"unicode/utf8"
)

// nameMax is NAME_MAX, the longest file name (one path component) in bytes
// on Linux and macOS filesystems.
const nameMax = 255

// checkComponent reports why this system cannot hold a file called c (one
// path component that passed checkName). A unix file name is any bytes but
// "/" and NUL, up to NAME_MAX; macOS filesystems also require UTF-8.
func checkComponent(c string) error {
	if len(c) > nameMax {
		return errors.New("a file name longer than 255 bytes")
	}
	if runtime.GOOS == "darwin" && !utf8.ValidString(c) {
		return errors.New("not valid UTF-8")
	}
	return nil
}
