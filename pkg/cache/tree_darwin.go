package cache

// Why a file: listing a directory where getdents64 is not at hand (see readDir), and the
// fields of a stat, which differ between systems.

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// readDir appends to ents the entries of the directory open at fd (which stays open), every
// entry of unknown type.
func readDir(fd int, _ []byte, ents []dirent) ([]dirent, error) {
	dup, err := unix.Dup(fd)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), "")
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		ents = append(ents, dirent{name: name})
	}
	return ents, nil
}

// statTimes returns the modification and inode change times of st, whose fields are named
// differently on each system.
func statTimes(st *syscall.Stat_t) (mtime, ctime syscall.Timespec) { return st.Mtimespec, st.Ctimespec }
