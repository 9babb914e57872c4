//go:build linux

package archive

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// setDefaultACL gives dir the default ACL u::rwx,g::r-x,o::--- (the xattr
// form of acl(5)), which new files under it take instead of the umask.
func setDefaultACL(t *testing.T, dir string) {
	t.Helper()
	acl := binary.LittleEndian.AppendUint32(nil, 2) // POSIX_ACL_XATTR_VERSION
	for _, e := range []struct{ tag, perm uint16 }{{0x01, 7}, {0x04, 5}, {0x20, 0}} {
		acl = binary.LittleEndian.AppendUint16(acl, e.tag)
		acl = binary.LittleEndian.AppendUint16(acl, e.perm)
		acl = binary.LittleEndian.AppendUint32(acl, 0xffffffff)
	}
	if err := unix.Setxattr(dir, "system.posix_acl_default", acl, 0); err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			t.Fatalf("the filesystem of %s has no POSIX ACLs: run the tests on one that has (ext4, xfs, btrfs, tmpfs)", dir)
		}
		t.Fatal(err)
	}
}

// A target whose directory has a default ACL still gets exactly the
// recorded modes: the ACL, not the umask, shapes a new file's mode there, so
// the umask alone cannot tell that the mode needs no fchmod.
func TestExtractModesUnderADefaultACL(t *testing.T) {
	modes := []fs.FileMode{0o644, 0o755, 0o777, 0o600}
	src := filepath.Join(tempDir(t), "src")
	writeModeFiles(t, src, modes, func(int, int) time.Time { return time.Unix(1_600_000_000, 0) })
	data, _ := mustWrite(t, []string{src}, Zstd, 0, nil)
	parent := filepath.Join(tempDir(t), "parent")
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	setDefaultACL(t, parent)
	target := filepath.Join(parent, "target")
	if _, err := Extract(context.Background(), bytes.NewReader(data), []string{target}, Zstd, nil); err != nil {
		t.Fatal(err)
	}
	eachModeFile(target, modes, func(p string, _ int, m fs.FileMode, _ int) {
		info, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Mode(); got != m {
			t.Errorf("%s: mode %v, want %v", p, got, m)
		}
	})
}
