package archive

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The names this package gives to the helpers of a target T. <stem> is the
// base name of T, shortened when long (see nameStem):
//
//	.<stem>.s3-cache-staging-<pid>-<random>  a restore's private directory,
//	                                         flocked while its process works
//	.<stem>.s3-cache-trash-<pid>-<random>    a staging directory being removed
//	.<stem>.s3-cache-old-<pid>-<random>      T moved aside by a two-rename swap
//	                                         (also left by versions before the
//	                                         exchange swap, without <pid>-)
//	.<stem>.s3-cache-kept-<pid>-<random>     T's previous content after an undo
//	                                         failed: never swept, the error
//	                                         names it for a person
//	.<stem>.s3-cache.lock                    T's host lock (LockTargets)
//
// The first three are leftovers when their process died: sweep removes them.
const (
	leftoverInfix = ".s3-cache-"
	kindStaging   = "staging"
	kindTrash     = "trash"
	kindOld       = "old"
	kindKept      = "kept" // not a leftover: isLeftover does not match it
	lockSuffix    = ".s3-cache.lock"
	// A base name longer than maxStem bytes is cut to stemKeep bytes plus a
	// hash of the whole, so that the helpers' names stay far below NAME_MAX
	// (255 bytes) even for a 255-byte target name.
	maxStem  = 100
	stemKeep = 64
)

// errExchangeUnsupported: the system or filesystem cannot swap two names
// atomically; swapIn falls back to two renames.
var errExchangeUnsupported = errors.New("atomic exchange not supported")

// nameStem returns the part of the helpers' names that comes from base, the
// target's name: base itself, or for a long one its first stemKeep bytes
// (whole UTF-8 characters) and 16 hex digits of its SHA-256.
func nameStem(base string) string {
	if len(base) <= maxStem {
		return base
	}
	keep := stemKeep
	if utf8.ValidString(base) {
		for keep > 0 && !utf8.RuneStart(base[keep]) {
			keep--
		}
	}
	sum := sha256.Sum256([]byte(base))
	return base[:keep] + "~" + hex.EncodeToString(sum[:8])
}

// leftoverName returns a new name for a helper of the kind given.
func leftoverName(stem, kind string) string {
	return "." + stem + leftoverInfix + kind + "-" + strconv.Itoa(os.Getpid()) + "-" + rand.Text()
}

// lockName returns the name of the host lock file of a target.
func lockName(stem string) string { return "." + stem + lockSuffix }

// isLeftover reports whether name is a staging, trash or old helper of the
// target whose stem is given. The suffix must be only letters, digits and
// dashes: so .a.s3-cache-staging-x.s3-cache-staging-1-X, a helper of the
// target "a.s3-cache-staging-x", is not taken for one of "a".
func isLeftover(name, stem string) bool {
	rest, ok := strings.CutPrefix(name, "."+stem+leftoverInfix)
	if !ok {
		return false
	}
	kind, suffix, ok := strings.Cut(rest, "-")
	if !ok || suffix == "" || (kind != kindStaging && kind != kindTrash && kind != kindOld) {
		return false
	}
	for _, r := range suffix {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// isMountPoint reports whether the directory p (info is its Lstat) is the
// root of a mount: a Docker volume, a tmpfs, a bind mount. Such a directory
// cannot be renamed (EBUSY) and it must stay where it is.
func isMountPoint(p string, info fs.FileInfo) bool {
	if root, known := statxMountRoot(p); known {
		return root
	}
	parent, err := os.Stat(filepath.Dir(p))
	return err == nil && otherDevice(info, parent)
}

// stagedTarget is the private staging area of one target T:
//
//	<dir>/.<stem>.s3-cache-staging-<pid>-<random>/       staging (0o700)
//	<dir>/.<stem>.s3-cache-staging-<pid>-<random>/root  the extracted content
//
// <dir> is the parent of T, hence on T's filesystem, so that the swap is a
// rename; if T is a mount point, <dir> is T itself and the swap moves T's
// children, so that T stays the mount point it is. The staging directory is
// flocked while this process works on it: sweep leaves it alone.
type stagedTarget struct {
	target  string // absolute path the content must end up at
	stem    string // nameStem of the target's name
	mount   bool   // target is a mount point: swap its children
	staging string // the private directory
	lock    *os.File
	root    string // staging/root: the extracted entry "i"
	swapped bool   // the restored content is at target
	umask   umask  // what shapes the mode of files created in it (fileUmask)

	// exchanged: the swap exchanged root and target, so root holds the
	// previous content. (An exchange needs a directory target to be
	// writable: targetMode is its mode to put back on undo.)
	exchanged bool
	// old is where a two-rename swap moved the previous content of target, ""
	// if target did not exist or the previous content was put back.
	old string
	// For a mount point: the previous children go to aside; movedOut and
	// movedIn are the names moved so far, for undo.
	aside             string
	movedOut, movedIn []string
	targetMode        fs.FileMode
	chmodded          bool      // target's mode was changed to make it writable
	targetMtime       time.Time // of a mount point: put back after a failure
	// keep: an undo failed and the staging directory holds the previous
	// content; the error said where, and it is not removed.
	keep bool
	// noExchange makes swapIn use two renames, as where exchange is not
	// supported (set by tests of that path).
	noExchange bool
}

// newStagedTarget creates the staging directory for target, and the parent
// directory of target if it is missing.
func newStagedTarget(target string) (*stagedTarget, error) {
	parent := filepath.Dir(target)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("create parent of %s: %w", target, err)
	}
	s := &stagedTarget{target: target, stem: nameStem(filepath.Base(target))}
	dir := parent
	if info, err := os.Lstat(target); err == nil && info.IsDir() && isMountPoint(target, info) {
		s.mount, dir, s.targetMtime = true, target, info.ModTime()
	}
	for {
		s.staging = filepath.Join(dir, leftoverName(s.stem, kindStaging))
		err := os.Mkdir(s.staging, 0o700)
		if errors.Is(err, fs.ErrExist) {
			continue // a random name taken: try another
		}
		if err != nil {
			return nil, fmt.Errorf("create staging directory for %s: %w", target, err)
		}
		break
	}
	lock, _, err := lockPath(s.staging)
	if err != nil {
		_ = os.Remove(s.staging)
		return nil, fmt.Errorf("lock staging directory for %s: %w", target, err)
	}
	s.lock, s.root = lock, filepath.Join(s.staging, "root")
	return s, nil
}

// path returns where the slash-separated rel (already validated) lives in the
// staging area; "" is the root.
func (s *stagedTarget) path(rel string) (string, error) {
	if rel == "" {
		return s.root, nil
	}
	local, err := localize(rel)
	if err != nil {
		return "", err
	}
	return filepath.Join(s.root, local), nil
}

// swapIn puts the staged content at target. Where the system allows it,
// root and target are exchanged atomically, so target exists throughout;
// otherwise target (if it exists) is renamed to <dir>/.<stem>.s3-cache-old-*,
// then root to target. A mount point gets its children swapped instead. On
// failure the previous content is put back.
func (s *stagedTarget) swapIn() error {
	if s.mount {
		return s.swapChildren()
	}
	info, err := os.Lstat(s.target)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.Rename(s.root, s.target); err != nil {
			return fmt.Errorf("move restored content to %s: %w", s.target, err)
		}
		s.swapped = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect %s: %w", s.target, err)
	}
	err = errExchangeUnsupported
	if !s.noExchange {
		err = s.exchange(info)
	}
	if err == nil {
		s.swapped, s.exchanged = true, true
		return nil
	}
	if !errors.Is(err, errExchangeUnsupported) {
		return fmt.Errorf("swap restored content into %s: %w", s.target, err)
	}
	old := filepath.Join(filepath.Dir(s.target), leftoverName(s.stem, kindOld))
	if err := os.Rename(s.target, old); err != nil {
		return fmt.Errorf("move %s aside: %w", s.target, err)
	}
	s.old = old
	if err := os.Rename(s.root, s.target); err != nil {
		err = fmt.Errorf("move restored content to %s: %w", s.target, err)
		return joinErrors(err, s.restoreOld())
	}
	s.swapped = true
	return nil
}

// exchange swaps root and target (info is target's Lstat). Moving a
// directory to another parent needs write permission on it, so a read-only
// target directory (Go's module cache) is made writable first; the mode is
// put back if the exchange fails, and by swapOut.
func (s *stagedTarget) exchange(info fs.FileInfo) error {
	if !info.IsDir() || info.Mode().Perm()&0o200 != 0 {
		return exchange(s.root, s.target)
	}
	s.targetMode = info.Mode().Perm()
	if err := os.Chmod(s.target, s.targetMode|0o200); err != nil {
		return fmt.Errorf("make %s writable: %w", s.target, err)
	}
	s.chmodded = true
	err := exchange(s.root, s.target)
	if err != nil {
		err = joinErrors(err, s.restoreTargetMode(s.target))
	}
	return err
}

// restoreTargetMode puts back the mode of the previous target, now at p.
func (s *stagedTarget) restoreTargetMode(p string) error {
	if !s.chmodded {
		return nil
	}
	if err := os.Chmod(p, s.targetMode); err != nil {
		return fmt.Errorf("restore the mode of %s: %w", p, err)
	}
	s.chmodded = false
	return nil
}

// swapOut undoes a successful swapIn: the restored content goes back to
// root, the previous content back to target.
func (s *stagedTarget) swapOut() error {
	if !s.swapped {
		return nil
	}
	if s.mount {
		return s.unswapChildren()
	}
	if s.exchanged {
		if err := exchange(s.root, s.target); err != nil {
			s.keep = true
			return fmt.Errorf("undo restore of %s (its previous content is at %s): %w", s.target, s.root, err)
		}
		s.swapped, s.exchanged = false, false
		return s.restoreTargetMode(s.target)
	}
	if err := os.Rename(s.target, s.root); err != nil {
		return fmt.Errorf("undo restore of %s: %w", s.target, err)
	}
	s.swapped = false
	return s.restoreOld()
}

// restoreOld renames the previous content back to target, if it was moved
// aside. If that fails, the error says where the previous content is (it is
// then not removed by this Extract).
func (s *stagedTarget) restoreOld() error {
	if s.old == "" {
		return nil
	}
	if err := os.Rename(s.old, s.target); err != nil {
		kept := keepAside(s.old, s.stem)
		s.old = ""
		return fmt.Errorf("put the previous content of %s back (it is at %s): %w", s.target, kept, err)
	}
	s.old = ""
	return nil
}

// swapChildren restores into the mount point target: its children move to
// staging/old, then root's children move into it. target itself, hence the
// mount, stays. This is not atomic: a crash in between leaves target with
// part of each, the rest in the staging directory.
func (s *stagedTarget) swapChildren() error {
	info, err := os.Lstat(s.root)
	if err != nil {
		return fmt.Errorf("restore into %s: %w", s.target, err)
	}
	if !info.IsDir() {
		return fmt.Errorf("restore into %s: it is a mount point, and the archive holds a %s for it, not a directory", s.target, typeName(info.Mode()))
	}
	tinfo, err := os.Lstat(s.target)
	if err != nil {
		return fmt.Errorf("restore into %s: %w", s.target, err)
	}
	if tinfo.Mode().Perm()&0o700 != 0o700 {
		s.targetMode = tinfo.Mode().Perm()
		if err := os.Chmod(s.target, s.targetMode|0o700); err != nil {
			return fmt.Errorf("make %s writable: %w", s.target, err)
		}
		s.chmodded = true
	}
	s.aside = filepath.Join(s.staging, "old")
	if err := os.Mkdir(s.aside, 0o700); err != nil {
		return joinErrors(fmt.Errorf("restore into %s: %w", s.target, err), s.restoreTargetMode(s.target))
	}
	s.swapped = true // from here on, swapOut undoes whatever was moved
	current, err := os.ReadDir(s.target)
	if err != nil {
		return joinErrors(fmt.Errorf("restore into %s: %w", s.target, err), s.swapOut())
	}
	for _, c := range current {
		if isLeftover(c.Name(), s.stem) {
			continue // the staging directory, and leftovers of other restores
		}
		if err := moveEntry(filepath.Join(s.target, c.Name()), filepath.Join(s.aside, c.Name())); err != nil {
			return joinErrors(fmt.Errorf("restore into %s: move the previous content aside: %w", s.target, err), s.swapOut())
		}
		s.movedOut = append(s.movedOut, c.Name())
	}
	staged, err := os.ReadDir(s.root)
	if err != nil {
		return joinErrors(fmt.Errorf("restore into %s: %w", s.target, err), s.swapOut())
	}
	for _, c := range staged {
		if err := moveEntry(filepath.Join(s.root, c.Name()), filepath.Join(s.target, c.Name())); err != nil {
			return joinErrors(fmt.Errorf("restore into %s: %w", s.target, err), s.swapOut())
		}
		s.movedIn = append(s.movedIn, c.Name())
	}
	return nil
}

// unswapChildren undoes swapChildren, in reverse order.
func (s *stagedTarget) unswapChildren() error {
	var errs []error
	for i := len(s.movedIn) - 1; i >= 0; i-- {
		n := s.movedIn[i]
		if err := moveEntry(filepath.Join(s.target, n), filepath.Join(s.root, n)); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(s.movedOut) - 1; i >= 0; i-- {
		n := s.movedOut[i]
		if err := moveEntry(filepath.Join(s.aside, n), filepath.Join(s.target, n)); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		s.keep = true
		return fmt.Errorf("undo restore into %s (what could not be put back is in %s): %w", s.target, s.aside, errors.Join(errs...))
	}
	s.movedIn, s.movedOut, s.swapped = nil, nil, false
	return s.restoreTargetMode(s.target)
}

// moveEntry renames from to to, in another directory. Moving a directory to
// another parent needs write permission on it, so a read-only directory is
// made writable for the move and given its mode back after.
func moveEntry(from, to string) error {
	err := os.Rename(from, to)
	if err == nil || !errors.Is(err, fs.ErrPermission) {
		return err
	}
	info, lerr := os.Lstat(from)
	if lerr != nil || !info.IsDir() || info.Mode().Perm()&0o200 != 0 {
		return err
	}
	mode := info.Mode().Perm()
	if err := os.Chmod(from, mode|0o200); err != nil {
		return err
	}
	if err := os.Rename(from, to); err != nil {
		return joinErrors(err, os.Chmod(from, mode))
	}
	return os.Chmod(to, mode)
}

// typeName names the type of a file for messages.
func typeName(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "regular file"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	default:
		return m.Type().String()
	}
}

// remove deletes the staging directory, with whatever previous content the
// swap left in it. It is first renamed to a trash name, which is instant:
// if the process is killed during a long removal, what is left is plainly
// garbage, and the next restore's sweep removes it.
func (s *stagedTarget) remove() error {
	defer s.unlock()
	if s.keep {
		// It holds what an undo could not put back: out of the sweep's reach.
		if kept := keepAside(s.staging, s.stem); kept != s.staging {
			return fmt.Errorf("what the failed undo could not put back of %s is kept in %s (moved from %s)", s.target, kept, s.staging)
		}
		return nil
	}
	p := s.staging
	trash := filepath.Join(filepath.Dir(s.staging), leftoverName(s.stem, kindTrash))
	if os.Rename(s.staging, trash) == nil {
		p = trash
	}
	if err := removeTree(p); err != nil {
		return fmt.Errorf("remove staging directory: %w", err)
	}
	if s.mount && !s.swapped {
		// The staging directory inside it changed its mtime.
		if err := os.Chtimes(s.target, time.Time{}, s.targetMtime); err != nil {
			return fmt.Errorf("restore the mtime of %s: %w", s.target, err)
		}
	}
	return nil
}

// unlock releases the staging directory's flock.
func (s *stagedTarget) unlock() {
	if s.lock != nil {
		_ = s.lock.Close()
		s.lock = nil
	}
}

// sweepTarget removes the leftovers of earlier restores of target that no
// live process holds (see sweep): next to it, and inside it if it is a mount
// point.
func sweepTarget(target string, warn warnFunc) {
	stem := nameStem(filepath.Base(target))
	sweep(filepath.Dir(target), stem, warn)
	if info, err := os.Lstat(target); err == nil && info.IsDir() && isMountPoint(target, info) {
		sweep(target, stem, warn)
	}
}

// sweep removes the staging, trash and old helpers of the target with stem
// found in dir whose process is gone: those nobody holds a flock on. (A
// helper of a version without these locks, or an old one of a two-rename
// swap, is never locked: the caller's host lock on the target is what says
// no live process is using it.) Problems are warnings: the restore goes on.
func sweep(dir, stem string, warn warnFunc) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			warn("could not look for leftovers of interrupted restores in %s: %v", dir, err)
		}
		return
	}
	for _, e := range entries {
		if !isLeftover(e.Name(), stem) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		lock, busy, err := lockPath(p)
		if busy {
			continue // a live restore's
		}
		if err != nil && !errors.Is(err, fs.ErrPermission) { // unreadable: not lockable, removable
			warn("could not remove %s, left by an interrupted restore: %v", p, err)
			continue
		}
		trash := filepath.Join(dir, leftoverName(stem, kindTrash))
		if os.Rename(p, trash) != nil {
			trash = p
		}
		if err := removeTree(trash); err != nil {
			warn("could not remove %s, left by an interrupted restore: %v", p, err)
		} else {
			warn("removed %s, left by an interrupted restore", p)
		}
		if lock != nil {
			_ = lock.Close()
		}
	}
}

// makeDirsWritable adds u+rwx to every directory under root, root included,
// without following symlinks. It is best effort: whatever cannot be fixed
// makes the following removal fail, which reports the problem.
func makeDirsWritable(root string) {
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		// WalkDir calls this for a directory before reading it, so the chmod
		// below makes it readable in time. Errors: skip what cannot be read.
		if err != nil || !d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if perm := info.Mode().Perm(); perm&0o700 != 0o700 {
			_ = os.Chmod(p, perm|0o700) // p is a real directory: WalkDir does not follow symlinks
		}
		return nil
	})
}

// keepAside renames the helper p to a kept name beside it, which no sweep removes, and returns
// where it is now (p itself if the rename fails).
func keepAside(p, stem string) string {
	kept := filepath.Join(filepath.Dir(p), leftoverName(stem, kindKept))
	if os.Rename(p, kept) != nil {
		return p
	}
	return kept
}
