package archive

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// DefaultLockTimeout is how long LockTargets waits for other jobs by default.
const DefaultLockTimeout = 10 * time.Minute

// ErrLockTimeout marks a host lock that another process held for longer than
// the timeout. Test with errors.Is.
var ErrLockTimeout = errors.New("timed out waiting for another job on this host")

// lockPoll bounds the interval between two attempts to take a busy lock.
const lockPoll = time.Second

// LockOptions says how LockTargets locks.
type LockOptions struct {
	// Exclusive is for a restore, which changes the targets. Otherwise the
	// lock is shared, for a save, which only reads them: saves of one target
	// run together, but never during a restore of it.
	Exclusive bool
	// Timeout bounds the whole wait; 0 means DefaultLockTimeout.
	Timeout time.Duration
	// Log hears of a wait for a target whose lock another process holds, and
	// of the sweep's removals (see LockTargets). May be nil.
	Log Logger
}

// Locks holds the host locks of a set of targets.
type Locks struct {
	held []heldLock
}

// heldLock is one lock held: the open file, and the lock file's path to
// remove on release ("" for a mount point, which locks itself).
type heldLock struct {
	f    *os.File
	path string
}

// LockTargets takes the host-wide advisory lock (flock) of every target, so
// that jobs of several agents on one host never restore a target at the same
// time, nor save it while another restores it. Every user of a target must
// take its lock: Extract relies on it to tell leftovers of dead processes
// from live ones. The locks are taken in sorted order, so that two jobs
// locking overlapping sets cannot deadlock. Cancelling ctx ends the wait.
//
// Once it holds a target's exclusive lock, it removes the leftovers of
// earlier restores of the target whose process is gone, as Extract does: so
// they go at the next restore of the target even if it is a cache miss.
//
// A target's lock is the file .<name>.s3-cache.lock next to it, created
// 0o600; it is opened without following a symlink, and refused unless it is
// a regular file of the user running this process, so that another local
// user cannot plant one. The last holder removes it (see Unlock). A target
// that is a mount point never moves: it is locked itself. A save does not
// lock a target whose parent directory does not exist (there is nothing to
// read) or is not writable (no restore could replace the target); a restore
// creates the parent.
//
// On Windows the lock is LockFileEx on the same file; elsewhere outside
// unix, locking does nothing.
func LockTargets(ctx context.Context, targets []string, o LockOptions) (*Locks, error) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultLockTimeout
	}
	deadline := time.Now().Add(o.Timeout)
	sorted := make([]string, 0, len(targets))
	for _, t := range targets {
		a, err := filepath.Abs(t)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", t, err)
		}
		sorted = append(sorted, a)
	}
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)

	l := &Locks{}
	for _, t := range sorted {
		h, err := lockOne(ctx, t, o, deadline)
		if err != nil {
			l.Unlock()
			return nil, err
		}
		if h.f != nil {
			l.held = append(l.held, h)
		}
		if o.Exclusive {
			sweepTarget(t, warnOrDiscard(o.Log))
		}
	}
	return l, nil
}

// lockOne takes the lock of target; a zero heldLock if there is nothing to
// lock.
func lockOne(ctx context.Context, target string, o LockOptions, deadline time.Time) (heldLock, error) {
	waited := false
	for {
		f, p, err := openLock(target, o.Exclusive)
		if err != nil || f == nil {
			return heldLock{}, err
		}
		if err := waitLock(ctx, f, target, o, deadline, &waited); err != nil {
			_ = f.Close()
			return heldLock{}, err
		}
		if p == "" || isFileAt(f, p) {
			return heldLock{f: f, path: p}, nil
		}
		// Its last holder removed the file while this process waited for it:
		// lock the file now at p.
		_ = f.Close()
	}
}

// isFileAt reports whether the open file f is the one at path p.
func isFileAt(f *os.File, p string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Lstat(p)
	return err == nil && os.SameFile(a, b)
}

// Unlock releases the locks. A lock file is removed when this process is its
// only holder, so that none is left beside the targets (one in a checkout
// would show in git status); a process waiting for it then notices that it
// locked a removed file, and starts again. Unlock may be called more than
// once.
func (l *Locks) Unlock() {
	for _, h := range l.held {
		if h.path != "" {
			if busy, err := tryLock(h.f, true); err == nil && !busy {
				_ = os.Remove(h.path)
			}
		}
		_ = h.f.Close()
	}
	l.held = nil
}

// openLock opens the file to lock for target (see LockTargets) and returns
// it with its path ("" for a mount point); a nil file if there is nothing to
// lock.
func openLock(target string, create bool) (*os.File, string, error) {
	parent := filepath.Dir(target)
	if info, err := os.Lstat(target); err == nil && info.IsDir() && isMountPoint(target, info) {
		f, err := os.Open(target)
		if err != nil {
			return nil, "", fmt.Errorf("lock %s: %w", target, err)
		}
		return f, "", nil
	}
	if create {
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return nil, "", fmt.Errorf("lock %s: create its parent: %w", target, err)
		}
	}
	p := filepath.Join(parent, lockName(nameStem(filepath.Base(target))))
	f, err := os.OpenFile(p, os.O_RDONLY|os.O_CREATE|openReadFlags, 0o600)
	if !create && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || isReadOnlyFS(err)) {
		// A save of a target in a directory it cannot write: no restore
		// of this user can replace that target either.
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("lock %s: open %s: %w", target, p, err)
	}
	info, err := f.Stat()
	if err == nil {
		err = checkOwner(info)
	}
	if err != nil {
		_ = f.Close()
		return nil, "", fmt.Errorf("lock %s: refusing the lock file %s: %w", target, p, err)
	}
	return f, p, nil
}

// waitLock takes the lock on f, polling while another process holds it,
// until the deadline or the end of ctx.
func waitLock(ctx context.Context, f *os.File, target string, o LockOptions, deadline time.Time, waited *bool) error {
	interval := 10 * time.Millisecond
	for {
		busy, err := tryLock(f, o.Exclusive)
		if err != nil {
			return fmt.Errorf("lock %s: %w", target, err)
		}
		if !busy {
			return nil
		}
		if !*waited && o.Log != nil {
			o.Log.Infof("Waiting for another job on this host to finish with %s…", target)
		}
		*waited = true
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("lock %s: %w (waited %s)", target, ErrLockTimeout, o.Timeout)
		}
		t := time.NewTimer(min(interval, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("lock %s: %w", target, ctx.Err())
		case <-t.C:
		}
		interval = min(2*interval, lockPoll)
	}
}
