//go:build darwin

package archive

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// exchange atomically swaps the names a and b, both of which must exist
// (renamex_np with RENAME_SWAP). It returns an error wrapping
// errExchangeUnsupported if the filesystem cannot do it.
func exchange(a, b string) error {
	err := unix.RenamexNp(a, b, unix.RENAME_SWAP)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.ENOSYS) {
		return fmt.Errorf("exchange %s and %s: %w (%w)", a, b, errExchangeUnsupported, err)
	}
	if err != nil {
		return fmt.Errorf("exchange %s and %s: %w", a, b, err)
	}
	return nil
}
