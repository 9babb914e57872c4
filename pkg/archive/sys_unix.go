//go:build unix

package archive

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// openNoFollow makes OpenFile fail instead of following a symlink in the
// last path component.
const openNoFollow = syscall.O_NOFOLLOW

// openReadFlags are added when Write opens a file to archive: never follow a
// symlink that replaced the file since the walk saw it, and never block on a
// FIFO that did.
const openReadFlags = syscall.O_NOFOLLOW | syscall.O_NONBLOCK

// fileID identifies an inode: the same fileID means the same file.
type fileID struct {
	dev, ino uint64
}

// hardLinkID returns the inode identity of a file that has more than one
// name (a hard link count above 1), and false for a file with a single name.
func hardLinkID(info fs.FileInfo) (fileID, bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok || st.Nlink <= 1 {
		return fileID{}, false
	}
	// The field types differ between operating systems, hence the conversions.
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, true
}

// tryLock takes flock(2) on f, exclusive or shared, without waiting. busy is
// true when another open file description holds a conflicting lock. The lock
// goes with the open file description: it is released when f is closed or
// the process dies, and it survives renames of the file.
func tryLock(f *os.File, exclusive bool) (busy bool, err error) {
	how := syscall.LOCK_SH | syscall.LOCK_NB
	if exclusive {
		how = syscall.LOCK_EX | syscall.LOCK_NB
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return false, err
	}
	var lockErr error
	if err := rc.Control(func(fd uintptr) {
		for {
			lockErr = syscall.Flock(int(fd), how)
			if lockErr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return false, err
	}
	if lockErr == syscall.EWOULDBLOCK {
		return true, nil
	}
	return false, lockErr
}

// checkOwner refuses a lock file that is not a regular file belonging to the
// user running this process: another local user may have planted it to hold
// the lock forever.
func checkOwner(info fs.FileInfo) error {
	if !info.Mode().IsRegular() {
		return fmt.Errorf("it is a %v, not a regular file", info.Mode().Type())
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("it belongs to uid %d, not to this user (uid %d)", st.Uid, os.Geteuid())
	}
	return nil
}

// otherDevice reports whether a and b are on different devices.
func otherDevice(a, b fs.FileInfo) bool {
	sa, okA := a.Sys().(*syscall.Stat_t)
	sb, okB := b.Sys().(*syscall.Stat_t)
	return okA && okB && sa.Dev != sb.Dev
}

// lockPath opens p (any type, without following a symlink or blocking on a
// FIFO) and takes an exclusive flock on it without waiting. busy is true
// when another process holds it; f is nil then, and for a symlink, which
// cannot be locked.
func lockPath(p string) (f *os.File, busy bool, err error) {
	f, err = os.OpenFile(p, os.O_RDONLY|openReadFlags, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	busy, err = tryLock(f, true)
	if busy || err != nil {
		_ = f.Close()
		return nil, busy, err
	}
	return f, false, nil
}

// isReadOnlyFS reports whether err says the filesystem is read-only.
func isReadOnlyFS(err error) bool { return errors.Is(err, syscall.EROFS) }

// openAheadLimit is how many files read-ahead may hold open: readAheadFiles,
// or an eighth of the descriptors this process may open if that is fewer,
// leaving the rest to the writer, the walk and the uploads.
func openAheadLimit() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return readAheadFiles
	}
	return int(max(1, min(readAheadFiles, lim.Cur/8)))
}
