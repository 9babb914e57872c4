package cache

// Why a file: listing a directory with getdents64, which gives each entry's type (see readDir),
// and the fields of a stat, which differ between systems.

import (
	"encoding/binary"
	"errors"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// readDir appends to ents the entries of the directory open at fd, listed with getdents64,
// which gives each entry's type: a walk then opens a directory without an lstat first. It
// leaves out . and .., and uses buf.
func readDir(fd int, buf []byte, ents []dirent) ([]dirent, error) {
	// struct linux_dirent64: d_ino (8 bytes), d_off (8), d_reclen (2), d_type (1), d_name.
	var d unix.Dirent
	nameAt, reclenAt, typeAt := int(unsafe.Offsetof(d.Name)), int(unsafe.Offsetof(d.Reclen)), int(unsafe.Offsetof(d.Type))
	for {
		n, err := unix.Getdents(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return ents, nil
		}
		for b := buf[:n]; len(b) > nameAt; {
			reclen := int(binary.NativeEndian.Uint16(b[reclenAt:]))
			if reclen <= nameAt || reclen > len(b) {
				return nil, errors.New("getdents: malformed entry")
			}
			name, typ := b[nameAt:reclen], b[typeAt]
			b = b[reclen:]
			for i, c := range name {
				if c == 0 {
					name = name[:i]
					break
				}
			}
			if s := string(name); s != "." && s != ".." {
				ents = append(ents, dirent{name: s, dir: typ == unix.DT_DIR})
			}
		}
	}
}

// statTimes returns the modification and inode change times of st, whose fields are named
// differently on each system.
func statTimes(st *syscall.Stat_t) (mtime, ctime syscall.Timespec) { return st.Mtim, st.Ctim }
