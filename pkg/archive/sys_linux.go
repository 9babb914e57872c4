//go:build linux

package archive

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// exchange atomically swaps the names a and b, both of which must exist
// (renameat2 with RENAME_EXCHANGE): at every instant each name refers to one
// of the two files. It returns an error wrapping errExchangeUnsupported if the
// kernel or filesystem cannot do it.
func exchange(a, b string) error {
	err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("exchange %s and %s: %w (%w)", a, b, errExchangeUnsupported, err)
	}
	if err != nil {
		return fmt.Errorf("exchange %s and %s: %w", a, b, err)
	}
	return nil
}

// statxMountRoot reports whether p is the root of a mount, as the kernel
// says (statx, Linux 5.8+); known is false when the kernel cannot tell.
// This also recognises a bind mount of a directory of the same filesystem,
// which has the same device number as its parent.
func statxMountRoot(p string) (root, known bool) {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &st); err != nil {
		return false, false
	}
	if st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return false, false
	}
	return st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, true
}
