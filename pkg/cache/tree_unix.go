//go:build linux || darwin

package cache

// Why a file: the walk behind a tree's digest, with directory file descriptors (fstatat and
// openat relative to them, no path resolution per entry), which only unix systems offer.

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// digestTree walks paths (every entry below each, never following a symlink) and returns the
// digest of their lstat metadata: see tree. Directories are read in parallel; the digest does
// not depend on the order. A tree that changes under the walk in a way the walk notices (an
// entry gone between listing and lstat, a directory replaced between lstat and open) is an
// error wrapping errChanged.
func digestTree(ctx context.Context, paths []string) (tree, error) {
	w := &walker{ctx: ctx, uid: uint32(os.Getuid())}
	w.bufs.New = func() any { b := make([]byte, 16<<10); return &b }
	w.lists.New = func() any { return &listing{h: sha256.New()} }
	w.g.SetLimit(walkerLimit())
	roots := sha256.New()
	ids := make([]rootID, len(paths))
	var firstErr error
	for i, p := range paths {
		var st unix.Stat_t
		name := strconv.Itoa(i)
		err := unix.Lstat(p, &st)
		if errors.Is(err, unix.ENOENT) {
			roots.Write(appendRecord(nil, name, nil, nil))
			continue
		}
		if err != nil {
			firstErr = fmt.Errorf("lstat %s: %w", p, err)
			break
		}
		m := metaOf(&st)
		ids[i] = rootID{dev: m.dev, ino: m.ino, exists: true}
		var link []byte
		if m.mode&unix.S_IFMT == unix.S_IFLNK {
			if link, err = readlink(unix.AT_FDCWD, p); err != nil {
				firstErr = err
				break
			}
		}
		roots.Write(appendRecord(nil, name, &m, link))
		w.note(m)
		if m.mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		fd, err := openDir(unix.AT_FDCWD, p, m)
		if err != nil {
			firstErr = err
			break
		}
		w.g.Go(func() error { return w.dir(fd, name) })
	}
	if err := w.g.Wait(); firstErr == nil {
		firstErr = err
	}
	if firstErr != nil {
		return tree{}, firstErr
	}
	t := w.tree
	t.digest = treeDigest(roots, w.dirs)
	t.roots = ids
	return t, nil
}

// rootIDs returns what stands at each of paths (lstat: a symlink is not followed).
func rootIDs(paths []string) ([]rootID, error) {
	ids := make([]rootID, len(paths))
	for i, p := range paths {
		var st unix.Stat_t
		err := unix.Lstat(p, &st)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("lstat %s: %w", p, err)
		}
		m := metaOf(&st)
		ids[i] = rootID{dev: m.dev, ino: m.ino, exists: true}
	}
	return ids, nil
}

// walker is one digestTree walk.
type walker struct {
	ctx context.Context
	g   errgroup.Group
	uid uint32

	bufs  sync.Pool // *[]byte for listing directories
	lists sync.Pool // *listing

	mu   sync.Mutex
	dirs []dirSum
	tree // the totals, without the digest
}

// note adds one path's own entry to the totals.
func (w *walker) note(m meta) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.addEntry(m, w.uid)
}

// dir records the entries of the directory open at fd, named rel, and walks its
// subdirectories: in other goroutines while the group has room, here otherwise. It closes fd.
func (w *walker) dir(fd int, rel string) error {
	defer unix.Close(fd)
	if err := w.ctx.Err(); err != nil {
		return err
	}
	l := w.lists.Get().(*listing)
	defer w.lists.Put(l)
	buf := w.bufs.Get().(*[]byte) // not held while subdirectories are walked inline
	ents, err := readDir(fd, *buf, l.ents[:0])
	w.bufs.Put(buf)
	l.ents = ents
	defer clear(ents) // the names, for the collector
	if err != nil {
		return fmt.Errorf("read directory %s: %w", rel, err)
	}
	slices.SortFunc(ents, func(a, b dirent) int { return strings.Compare(a.name, b.name) })
	h := l.h
	h.Reset()
	var local tree
	for i, e := range ents {
		if i%cancelEvery == cancelEvery-1 {
			if err := w.ctx.Err(); err != nil {
				return err
			}
		}
		var st unix.Stat_t
		child := -1
		if e.dir {
			// A directory is opened, then described by what was opened: one system call less
			// than an lstat and an open checked against it, which an unknown type still takes.
			child, err = openDirAt(fd, e.name, &st)
		} else if err = unix.Fstatat(fd, e.name, &st, unix.AT_SYMLINK_NOFOLLOW); errors.Is(err, unix.ENOENT) {
			err = fmt.Errorf("%s: %w", e.name, errChanged)
		} else if err != nil {
			err = fmt.Errorf("lstat %s: %w", e.name, err)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		m := metaOf(&st)
		var link []byte
		switch m.mode & unix.S_IFMT {
		case unix.S_IFLNK:
			if link, err = readlink(fd, e.name); err != nil {
				return err
			}
		case unix.S_IFDIR:
			if child < 0 {
				if child, err = openDir(fd, e.name, m); err != nil {
					return err
				}
			}
			childRel := rel + "/" + e.name
			if !w.g.TryGo(func() error { return w.dir(child, childRel) }) {
				if err := w.dir(child, childRel); err != nil {
					return err
				}
			}
		}
		l.rec = appendRecord(l.rec[:0], e.name, &m, link)
		h.Write(l.rec)
		local.addEntry(m, w.uid)
	}
	d := dirSum{rel: rel}
	copy(d.sum[:], h.Sum(nil)) // (Sum into d.sum would move d to the heap: no allocation saved)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.dirs = append(w.dirs, d)
	w.merge(local)
	return nil
}

// cancelEvery is how many entries of one directory a walk describes between two looks at its
// context: a cancelled walk (a download about to begin, a job cancelled) stops within about a
// millisecond, not after a flat directory's last entry.
const cancelEvery = 256

// minWalkers is the fewest goroutines a walk runs, whatever the cores. A walker lives for one
// directory (and those it walks inline while the group is full), and most directories of a
// dependency tree are small, so walkers end and start all the time; with one per core, a core
// sat idle from one walker's end to the next one's start. On node_modules (45k entries, two
// cores) eight walkers took a walk from 156 to 122 ms (BenchmarkDigestTree; 9k context
// switches in 30 walks against 32k), sixteen or more no further.
const minWalkers = 8

// walkerLimit is how many goroutines a walk runs: minWalkers, or one per core where there
// are more, but no more than one per 128 descriptors this process may open. A walker holds a
// descriptor for each directory it walks inline below the one it started with, so the limit
// leaves room for trees 100 levels deep.
func walkerLimit() int {
	n := max(minWalkers, runtime.GOMAXPROCS(0))
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return n
	}
	return int(max(2, min(uint64(n), lim.Cur/128)))
}

// listing is what describing one directory takes besides its getdents buffer, recycled from
// one directory to the next (a walk of node_modules allocated 8.5 MB without it, and the
// hook's collector runs at a quarter of a small heap): the entries, one entry's record, and
// the directory's hash.
type listing struct {
	ents []dirent
	rec  []byte
	h    hash.Hash
}

// dirent is a directory entry as the directory lists it: dir is false when its type is
// another or unknown.
type dirent struct {
	name string
	dir  bool
}

// openDirAt opens the directory name (relative to dirfd), without following a symlink, and
// fills st with what it opened. Anything but a directory there is a change of the tree.
func openDirAt(dirfd int, name string, st *unix.Stat_t) (int, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			return -1, fmt.Errorf("%s: %w", name, errChanged)
		}
		return -1, fmt.Errorf("open directory %s: %w", name, err)
	}
	if err := unix.Fstat(fd, st); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("stat directory %s: %w", name, err)
	}
	return fd, nil
}

// openDir opens the directory name (relative to dirfd) that lstat described as m, refusing
// anything else that took its place since: a symlink, another inode.
func openDir(dirfd int, name string, m meta) (int, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			return -1, fmt.Errorf("%s: %w", name, errChanged)
		}
		return -1, fmt.Errorf("open directory %s: %w", name, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("stat directory %s: %w", name, err)
	}
	if got := metaOf(&st); got.ino != m.ino || got.dev != m.dev {
		unix.Close(fd)
		return -1, fmt.Errorf("%s: %w", name, errChanged)
	}
	return fd, nil
}

// readlink returns the target of the symlink name, relative to dirfd, as bytes.
func readlink(dirfd int, name string) ([]byte, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return nil, fmt.Errorf("read symlink %s: %w", name, err)
		}
		if n < size {
			return buf[:n], nil
		}
	}
}

// metaOf is what a tree's digest records of one lstat; the field types differ between systems.
func metaOf(st *unix.Stat_t) meta {
	return meta{
		mode: uint32(st.Mode), nlink: uint64(st.Nlink), uid: st.Uid, gid: st.Gid, size: st.Size,
		mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano(), ino: uint64(st.Ino), dev: uint64(st.Dev),
	}
}

// metaOfInfo is metaOf for the lstat or fstat behind info (what an archive stored an entry from);
// false if info holds none.
func metaOfInfo(info fs.FileInfo) (meta, bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return meta{}, false
	}
	mtime, ctime := statTimes(st)
	return meta{
		mode: uint32(st.Mode), nlink: uint64(st.Nlink), uid: st.Uid, gid: st.Gid, size: st.Size,
		mtime: mtime.Nano(), ctime: ctime.Nano(), ino: uint64(st.Ino), dev: uint64(st.Dev),
	}, true
}
