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
	// Waiting, if not nil, is called before waiting for a target whose lock
	// another process holds.
	Waiting func(target string)
}

// Locks holds the host locks of a set of targets.
type Locks struct {
	files []*os.File
}

// LockTargets takes the host-wide advisory lock (flock) of every target, so
// that jobs of several agents on one host never restore a target at the same
// time, nor save it while another restores it. Every user of a target must
// take its lock: Extract relies on it to tell leftovers of dead processes
// from live ones. The locks are taken in sorted order, so that two jobs
// locking overlapping sets cannot deadlock. Cancelling ctx ends the wait.
//
// A target's lock is the file .<name>.s3-cache.lock next to it, created
// 0o600 and never removed; it is opened without following a symlink, and
// refused unless it is a regular file of the user running this process, so
// that another local user cannot plant one. A target that is a mount point
// never moves: it is locked itself. A save does not lock a target whose
// parent directory does not exist (there is nothing to read); a restore
// creates the parent.
//
// Outside unix, locking does nothing.
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
		f, err := openLock(t, o.Exclusive)
		if err == nil && f != nil {
			err = waitLock(ctx, f, t, o, deadline)
			if err != nil {
				_ = f.Close()
			}
		}
		if err != nil {
			l.Unlock()
			return nil, err
		}
		if f != nil {
			l.files = append(l.files, f)
		}
	}
	return l, nil
}

// Unlock releases the locks. It may be called more than once.
func (l *Locks) Unlock() {
	for _, f := range l.files {
		_ = f.Close()
	}
	l.files = nil
}

// openLock opens the file to lock for target (see LockTargets); nil if there
// is nothing to lock.
func openLock(target string, create bool) (*os.File, error) {
	parent := filepath.Dir(target)
	if info, err := os.Lstat(target); err == nil && info.IsDir() && isMountPoint(target, info) {
		f, err := os.Open(target)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", target, err)
		}
		return f, nil
	}
	if create {
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return nil, fmt.Errorf("lock %s: create its parent: %w", target, err)
		}
	}
	p := filepath.Join(parent, lockName(nameStem(filepath.Base(target))))
	f, err := os.OpenFile(p, os.O_RDONLY|os.O_CREATE|openReadFlags, 0o600)
	if errors.Is(err, fs.ErrNotExist) && !create {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lock %s: open %s: %w", target, p, err)
	}
	info, err := f.Stat()
	if err == nil {
		err = checkOwner(info)
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("lock %s: refusing the lock file %s: %w", target, p, err)
	}
	return f, nil
}

// waitLock takes the lock on f, polling while another process holds it,
// until the deadline or the end of ctx.
func waitLock(ctx context.Context, f *os.File, target string, o LockOptions, deadline time.Time) error {
	interval := 10 * time.Millisecond
	for waited := false; ; waited = true {
		busy, err := tryLock(f, o.Exclusive)
		if err != nil {
			return fmt.Errorf("lock %s: %w", target, err)
		}
		if !busy {
			return nil
		}
		if !waited && o.Waiting != nil {
			o.Waiting(target)
		}
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
