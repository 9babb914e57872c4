//go:build darwin

package cache

import "golang.org/x/sys/unix"

// metaOf is what a tree's digest records of one lstat; the field types differ between systems.
func metaOf(st *unix.Stat_t) meta {
	return meta{
		mode: uint32(st.Mode), nlink: uint64(st.Nlink), uid: st.Uid, gid: st.Gid, size: st.Size,
		mtime: st.Mtimespec.Nano(), ctime: st.Ctimespec.Nano(), ino: st.Ino, dev: uint64(st.Dev),
	}
}
