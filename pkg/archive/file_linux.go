//go:build linux

package archive

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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
	fd, err := openFD("create", p, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|openNoFollow, uint32(mode.Perm()))
	if err != nil {
		return nil, err
	}
	return &outFile{fd: fd, mode: mode}, nil
}

// openFD is open(2) with O_CLOEXEC, retried when a signal interrupts it; its
// error is an *fs.PathError of op.
func openFD(op, p string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Open(p, flags|unix.O_CLOEXEC, mode)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, &fs.PathError{Op: op, Path: p, Err: err}
		}
		return fd, nil
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

// inFile is a regular file being archived, as a bare descriptor: no
// os.File, so no poller registration (a failed epoll_ctl per file) and no
// finalizer. A save opens tens of thousands of them.
type inFile struct {
	fd   int
	path string
}

// openFile opens p to archive it, with openReadFlags: never following a
// symlink, never blocking on a FIFO.
func openFile(p string) (*inFile, error) {
	fd, err := openFD("open", p, unix.O_RDONLY|openReadFlags, 0)
	if err != nil {
		return nil, err
	}
	return &inFile{fd: fd, path: p}, nil
}

// Read reads up to len(b) bytes; io.EOF at the end of the file.
func (f *inFile) Read(b []byte) (int, error) {
	for {
		n, err := unix.Read(f.fd, b)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, &fs.PathError{Op: "read", Path: f.path, Err: err}
		case n == 0 && len(b) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// Stat describes the file opened, as os.File.Stat does.
func (f *inFile) Stat() (fs.FileInfo, error) {
	fi := &fileStat{name: filepath.Base(f.path)}
	for {
		err := syscall.Fstat(f.fd, &fi.sys)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "stat", Path: f.path, Err: err}
		}
		return fi, nil
	}
}

func (f *inFile) Close() error { return unix.Close(f.fd) }

// fileStat is the fs.FileInfo of an inFile: what os.File.Stat returns,
// from the same fstat(2), with the same Sys.
type fileStat struct {
	name string
	sys  syscall.Stat_t
}

func (s *fileStat) Name() string       { return s.name }
func (s *fileStat) Size() int64        { return s.sys.Size }
func (s *fileStat) ModTime() time.Time { return time.Unix(s.sys.Mtim.Unix()) }
func (s *fileStat) IsDir() bool        { return s.Mode().IsDir() }
func (s *fileStat) Sys() any           { return &s.sys }

// Mode converts the mode bits as package os does.
func (s *fileStat) Mode() fs.FileMode {
	m := fs.FileMode(s.sys.Mode & 0o777)
	switch s.sys.Mode & syscall.S_IFMT {
	case syscall.S_IFBLK:
		m |= fs.ModeDevice
	case syscall.S_IFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case syscall.S_IFDIR:
		m |= fs.ModeDir
	case syscall.S_IFIFO:
		m |= fs.ModeNamedPipe
	case syscall.S_IFLNK:
		m |= fs.ModeSymlink
	case syscall.S_IFSOCK:
		m |= fs.ModeSocket
	}
	if s.sys.Mode&syscall.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	if s.sys.Mode&syscall.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if s.sys.Mode&syscall.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// willNeed has the kernel start reading the first size bytes of f into the
// page cache, so that on a cold cache the disk reads of the files opened
// ahead overlap; it costs little when they are cached.
func willNeed(f *inFile, size int64) {
	_ = unix.Fadvise(f.fd, 0, size, unix.FADV_WILLNEED)
}
