//go:build linux

package archive

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// outFile is a regular file being extracted, as a bare descriptor: no
// os.File, so no poller registration and no finalizer, and the fewest
// syscalls per file (open, write, close, plus futimens when there is an
// mtime and fchmod only where the umask would change the mode).
type outFile struct {
	fd   int
	mode fs.FileMode
}

// createFile creates the regular file p with the final permission bits
// mode. O_EXCL: never reuse an existing file or symlink; O_NOFOLLOW: belt
// and braces against a symlink in the last component. The descriptor can
// write even if mode does not allow it (open(2) grants the access asked for
// when it creates the file).
func createFile(p string, mode fs.FileMode) (*outFile, error) {
	for {
		fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|openNoFollow|unix.O_CLOEXEC, uint32(mode.Perm()))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "create", Path: p, Err: err}
		}
		return &outFile{fd: fd, mode: mode}, nil
	}
}

// Write writes all of b.
func (f *outFile) Write(b []byte) (int, error) {
	written := 0
	for written < len(b) {
		n, err := unix.Write(f.fd, b[written:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return written, err
		}
		if n == 0 {
			return written, fmt.Errorf("write: %w", unix.EIO)
		}
		written += n
	}
	return written, nil
}

// finish gives the file its mode where the umask (umask, known) took bits
// away, and its mtime unless zero, through the descriptor, then closes it.
func (f *outFile) finish(mtime time.Time, u umask) error {
	err := f.setMeta(mtime, u)
	if cerr := unix.Close(f.fd); err == nil && cerr != nil && cerr != unix.EINTR {
		err = cerr
	}
	return err
}

func (f *outFile) setMeta(mtime time.Time, u umask) error {
	if !u.known || f.mode.Perm()&u.bits != 0 {
		if err := fchmod(f.fd, f.mode.Perm()); err != nil {
			return fmt.Errorf("set mode: %w", err)
		}
	}
	if mtime.IsZero() {
		return nil
	}
	if err := futimens(f.fd, mtime); err != nil {
		return fmt.Errorf("set mtime: %w", err)
	}
	return nil
}

// abandon closes the file after a failure; the staging directory holding it
// is removed by the caller.
func (f *outFile) abandon() { _ = unix.Close(f.fd) }

func fchmod(fd int, mode fs.FileMode) error {
	for {
		err := unix.Fchmod(fd, uint32(mode))
		if err != unix.EINTR {
			return err
		}
	}
}

// futimens sets the mtime of the file open as fd, leaving its atime:
// utimensat(fd, NULL, times, 0), which is what the C library's futimens
// does. (x/sys/unix has no futimens on Linux, and its Futimes goes through
// /proc/self/fd, a path lookup.)
func futimens(fd int, mtime time.Time) error {
	ts := [2]unix.Timespec{
		{Nsec: unix.UTIME_OMIT},
		unix.NsecToTimespec(mtime.UnixNano()),
	}
	for {
		_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return e
		}
		return nil
	}
}

// umask is the process's file mode creation mask, if known.
type umask struct {
	bits  fs.FileMode
	known bool
}

// fileUmask is the umask that shapes the mode of files created below dir, a
// staging directory: u, the process's, unless dir has a default ACL, which
// new files below it inherit and which then takes the umask's place (acl(5)),
// so that only an fchmod gives them their mode. Unsure, it says unknown.
func fileUmask(u umask, dir string) umask {
	_, err := unix.Getxattr(dir, "system.posix_acl_default", nil)
	if errors.Is(err, unix.ENODATA) || errors.Is(err, unix.ENOTSUP) {
		return u
	}
	return umask{}
}

// readUmask reads the umask from /proc/self/status (Linux 4.7+) without
// changing it: umask(2) can only read it by setting it, which would race
// with other goroutines creating files. Unknown, every file gets an fchmod.
func readUmask() umask {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return umask{}
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "Umask:")
		if !ok {
			continue
		}
		bits, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
		if err != nil {
			return umask{}
		}
		return umask{bits: fs.FileMode(bits) & fs.ModePerm, known: true}
	}
	return umask{}
}
