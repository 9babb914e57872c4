package archive

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lockOpts returns options with a short timeout that record the targets waited for.
func lockOpts(exclusive bool, timeout time.Duration, waited *[]string) LockOptions {
	return LockOptions{Exclusive: exclusive, Timeout: timeout, Log: &waitLog{waited: waited}}
}

// waitLog records the target of each "Waiting for another job …" line.
type waitLog struct {
	mu     sync.Mutex
	waited *[]string
}

func (l *waitLog) Infof(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if strings.HasPrefix(format, "Waiting for another job") && len(args) == 1 {
		*l.waited = append(*l.waited, fmt.Sprint(args[0]))
	}
}

func (l *waitLog) Warnf(string, ...any) {}

func mustLock(t *testing.T, targets []string, o LockOptions) *Locks {
	t.Helper()
	l, err := LockTargets(t.Context(), targets, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Unlock)
	return l
}

// TestLockTargetsConflicts: a restore's lock excludes other restores and
// saves of the same target until released, saves share; the waiter is
// told, and gives up at the timeout with ErrLockTimeout.
func TestLockTargetsConflicts(t *testing.T) {
	for _, tc := range []struct {
		name          string
		first, second bool // exclusive?
		conflict      bool
	}{
		{"restore then restore", true, true, true},
		{"restore then save", true, false, true},
		{"save then restore", false, true, true},
		{"save then save", false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := filepath.Join(tempDir(t), "target")
			first := mustLock(t, []string{target}, LockOptions{Exclusive: tc.first})
			var waited []string
			start := time.Now()
			l, err := LockTargets(t.Context(), []string{target}, lockOpts(tc.second, 300*time.Millisecond, &waited))
			if !tc.conflict {
				if err != nil || len(waited) > 0 {
					t.Fatalf("got %v (waited for %q), want the lock at once", err, waited)
				}
				// The first save's release keeps the lock file the second
				// holds: a restore still waits for the second.
				first.Unlock()
				if _, err := LockTargets(t.Context(), []string{target}, LockOptions{Exclusive: true, Timeout: 50 * time.Millisecond}); !errors.Is(err, ErrLockTimeout) {
					t.Errorf("a restore got the lock during the second save: %v", err)
				}
				l.Unlock()
				return
			}
			if !errors.Is(err, ErrLockTimeout) || !strings.Contains(err.Error(), target) {
				t.Fatalf("got %v, want ErrLockTimeout naming %s", err, target)
			}
			if d := time.Since(start); d < 300*time.Millisecond {
				t.Errorf("gave up after %s, before the timeout", d)
			}
			if len(waited) != 1 || waited[0] != target {
				t.Errorf("Waiting called with %q, want once with %s", waited, target)
			}
			first.Unlock()
			l, err = LockTargets(t.Context(), []string{target}, lockOpts(tc.second, time.Second, &waited))
			if err != nil {
				t.Fatalf("after the release: %v", err)
			}
			l.Unlock()
		})
	}
}

// TestLockTargetsWaitsThenGets: a waiting job gets the lock as soon as the
// holder releases it, and cancelling its context ends the wait at once.
func TestLockTargetsWaitsThenGets(t *testing.T) {
	target := filepath.Join(tempDir(t), "target")
	lockFile := filepath.Join(filepath.Dir(target), ".target.s3-cache.lock")
	held := mustLock(t, []string{target}, LockOptions{Exclusive: true})
	type result struct {
		l   *Locks
		err error
	}
	got := make(chan result, 1)
	go func() {
		l, err := LockTargets(context.Background(), []string{target}, LockOptions{Exclusive: true, Timeout: time.Minute})
		got <- result{l, err}
	}()
	time.Sleep(100 * time.Millisecond)
	select {
	case r := <-got:
		t.Fatalf("got the lock while it was held: %v", r.err)
	default:
	}
	// The holder removes the lock file it waits on; the waiter must then
	// hold the lock of the file at the path, not of the removed one.
	held.Unlock()
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	if _, err := LockTargets(t.Context(), []string{target}, LockOptions{Timeout: 50 * time.Millisecond}); !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("a third job got the lock the waiter took over: %v", err)
	}
	r.l.Unlock()
	if _, err := os.Lstat(lockFile); err == nil {
		t.Error("the lock file is left after the last holder released it")
	}

	mustLock(t, []string{target}, LockOptions{Exclusive: true}) // released at cleanup
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := LockTargets(ctx, []string{target}, LockOptions{Exclusive: true, Timeout: time.Hour})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancellation took %s", d)
	}
}

// TestLockTargetsOrder: jobs locking the same targets listed in opposite
// orders do not deadlock (they would time out if they did).
func TestLockTargetsOrder(t *testing.T) {
	dir := tempDir(t)
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, targets := range [][]string{{a, b}, {b, a}} {
		wg.Go(func() {
			for range 200 {
				l, err := LockTargets(context.Background(), targets, LockOptions{Exclusive: true, Timeout: 10 * time.Second})
				if err != nil {
					errs <- err
					return
				}
				l.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestLockFileHostile: a lock file planted by someone else (a symlink,
// another user's file, a FIFO) is refused with an error naming it, without
// following or blocking.
func TestLockFileHostile(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, p, elsewhere string)
		want  string
	}{
		{"symlink", func(t *testing.T, p, elsewhere string) { mustSymlink(t, elsewhere, p) }, "symbolic links"},
		{"other user's file", func(t *testing.T, p, _ string) {
			writeFile(t, p, "", 0o644, time.Now())
			if err := os.Lchown(p, 12345, 12345); err != nil {
				t.Fatalf("chown (this test needs root; CI runs it as root): %v", err)
			}
		}, "uid 12345"},
		{"fifo", func(t *testing.T, p, _ string) { makeFifo(t, p) }, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tempDir(t)
			target, elsewhere := filepath.Join(dir, "target"), filepath.Join(dir, "elsewhere")
			lockFile := filepath.Join(dir, ".target.s3-cache.lock")
			tc.plant(t, lockFile, elsewhere)
			_, err := LockTargets(t.Context(), []string{target}, LockOptions{Exclusive: true, Timeout: time.Second})
			if err == nil || !strings.Contains(err.Error(), lockFile) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %s and saying %q", err, lockFile, tc.want)
			}
			if _, err := os.Lstat(elsewhere); err == nil {
				t.Error("followed the symlink")
			}
		})
	}
}

// TestLockFileName: the lock is a sibling file, also for a target with a
// 255-byte name; a save of a target whose parent is missing locks nothing
// and creates nothing, nor in a read-only directory; a mount point is locked
// itself, with no file beside.
func TestLockFileName(t *testing.T) {
	dir := tempDir(t)
	long := filepath.Join(dir, strings.Repeat("z", 255))
	mustLock(t, []string{long}, LockOptions{Exclusive: true})
	info, err := os.Stat(filepath.Join(dir, lockName(nameStem(filepath.Base(long)))))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("lock file mode %v, want 0600", info.Mode())
	}

	missing := filepath.Join(dir, "missing", "target")
	mustLock(t, []string{missing}, LockOptions{})
	if _, err := os.Lstat(filepath.Dir(missing)); err == nil {
		t.Error("a save created the parent of its target")
	}

	ro := filepath.Join(dir, "ro")
	if err := os.Mkdir(ro, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", ro, "tmpfs", syscall.MS_RDONLY, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs (this test needs root; CI runs it as root): %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(ro, syscall.MNT_DETACH) })
	mustLock(t, []string{filepath.Join(ro, "target")}, LockOptions{}) // a save: nothing to lock
	if _, err := LockTargets(t.Context(), []string{filepath.Join(ro, "target")}, LockOptions{Exclusive: true}); err == nil {
		t.Error("a restore locked a target in a read-only directory")
	}

	mount := filepath.Join(dir, "mount")
	if err := os.Mkdir(mount, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mount, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs (this test needs root; CI runs it as root): %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(mount, syscall.MNT_DETACH) })
	held := mustLock(t, []string{mount}, LockOptions{Exclusive: true})
	if _, err := os.Lstat(filepath.Join(dir, ".mount.s3-cache.lock")); err == nil {
		t.Error("a lock file was created beside a mount point")
	}
	if _, err := LockTargets(t.Context(), []string{mount}, LockOptions{Exclusive: true, Timeout: 50 * time.Millisecond}); !errors.Is(err, ErrLockTimeout) {
		t.Errorf("second lock of a mount point: got %v, want ErrLockTimeout", err)
	}
	held.Unlock()
}

// TestExchange: exchange swaps two names of any types in one step.
func TestExchange(t *testing.T) {
	dir := tempDir(t)
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "sub", "b")
	writeFile(t, filepath.Join(a, "in-a"), "a", 0o644, time.Now())
	writeFile(t, b, "b", 0o644, time.Now())
	if err := exchange(a, b); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(a); err != nil || string(data) != "b" {
		t.Errorf("a: %q, %v; want the file b", data, err)
	}
	if _, err := os.Stat(filepath.Join(b, "in-a")); err != nil {
		t.Errorf("b is not the directory a: %v", err)
	}
	err := exchange(a, filepath.Join(dir, "missing"))
	if err == nil || errors.Is(err, errExchangeUnsupported) {
		t.Errorf("exchange with a missing name: got %v, want an error other than unsupported", err)
	}
}

// TestLockTargetsSweeps: a restore's lock removes the leftovers of dead
// restores of the target, even if no Extract follows (a cache miss); a
// save's lock leaves them to the next restore.
func TestLockTargetsSweeps(t *testing.T) {
	dir := tempDir(t)
	target := filepath.Join(dir, "target")
	stale := filepath.Join(dir, ".target.s3-cache-staging-99-DEADDEADDEAD")
	writeFile(t, filepath.Join(stale, "root/file"), "stale", 0o644, time.Now())

	l := mustLock(t, []string{target}, LockOptions{})
	l.Unlock()
	if _, err := os.Lstat(stale); err != nil {
		t.Fatalf("a save's lock removed a leftover: %v", err)
	}
	var w warnings
	mustLock(t, []string{target}, LockOptions{Exclusive: true, Log: &w})
	if _, err := os.Lstat(stale); err == nil {
		t.Error("a restore's lock left a dead restore's staging directory")
	}
	if !w.contains(stale) {
		t.Errorf("no warning names %s: %q", stale, w.msgs)
	}
}
