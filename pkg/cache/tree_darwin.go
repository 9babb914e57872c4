package cache

// Why a file: listing a directory where getdents64 is not at hand (see readDir), and the
// fields of a stat, which differ between systems.

import (
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// readDir lists the directory open at fd (which stays open), every entry of unknown type.
func readDir(fd int, _ []byte) ([]dirent, error) {
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
	ents := make([]dirent, len(names))
	for i, name := range names {
		ents[i] = dirent{name: name}
	}
	return ents, nil
}

// metaOfInfo is metaOf for the lstat or fstat behind info (what an archive stored an entry from);
// false if info holds none.
func metaOfInfo(info fs.FileInfo) (meta, bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return meta{}, false
	}
	return meta{
		mode: uint32(st.Mode), nlink: uint64(st.Nlink), uid: st.Uid, gid: st.Gid, size: st.Size,
		mtime: st.Mtimespec.Nano(), ctime: st.Ctimespec.Nano(), ino: uint64(st.Ino), dev: uint64(st.Dev),
	}, true
}
