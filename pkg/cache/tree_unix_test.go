//go:build linux || darwin

package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func mustT(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// smallTree writes a file, an executable, a symlink and a nested directory below dir.
func smallTree(t testing.TB, dir string) {
	t.Helper()
	mustT(t, os.MkdirAll(filepath.Join(dir, "sub", "deep"), 0o755))
	mustT(t, os.WriteFile(filepath.Join(dir, "a.txt"), []byte("hello"), 0o644))
	mustT(t, os.WriteFile(filepath.Join(dir, "sub", "run.sh"), []byte("#!/bin/sh\n"), 0o755))
	mustT(t, os.Symlink("../a.txt", filepath.Join(dir, "sub", "link")))
}

// settled walks paths and settles, as a restore does before it records the digest.
func settled(t *testing.T, paths []string) tree {
	t.Helper()
	tr, err := digestTree(t.Context(), paths)
	mustT(t, err)
	mustT(t, settle(t.Context(), tr))
	return tr
}

// Every kind of change to a tree, however small, changes its digest, even one made at once
// after the walk and one that puts the size and modification time back.
func TestDigestSeesEveryChange(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, dir string)
	}{
		{"a file's content, same size and mtime", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "a.txt")
			fi, err := os.Stat(p)
			mustT(t, err)
			mustT(t, os.WriteFile(p, []byte("HELLO"), 0o644))
			mustT(t, os.Chtimes(p, fi.ModTime(), fi.ModTime()))
		}},
		{"a file's mode", func(t *testing.T, dir string) { mustT(t, os.Chmod(filepath.Join(dir, "sub", "run.sh"), 0o700)) }},
		{"a mode set to what it was", func(t *testing.T, dir string) { mustT(t, os.Chmod(filepath.Join(dir, "a.txt"), 0o644)) }},
		{"an added file", func(t *testing.T, dir string) {
			mustT(t, os.WriteFile(filepath.Join(dir, "sub", "deep", "new"), nil, 0o644))
		}},
		{"a removed file", func(t *testing.T, dir string) { mustT(t, os.Remove(filepath.Join(dir, "sub", "run.sh"))) }},
		{"an added empty directory", func(t *testing.T, dir string) { mustT(t, os.Mkdir(filepath.Join(dir, "sub", "deep", "d"), 0o755)) }},
		{"a symlink's target", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "sub", "link")
			mustT(t, os.Remove(p))
			mustT(t, os.Symlink("../b.txt", p))
		}},
		{"a touched directory", func(t *testing.T, dir string) {
			now := time.Now()
			mustT(t, os.Chtimes(filepath.Join(dir, "sub", "deep"), now, now))
		}},
		{"a renamed file", func(t *testing.T, dir string) {
			mustT(t, os.Rename(filepath.Join(dir, "a.txt"), filepath.Join(dir, "b.txt")))
		}},
		{"a file replaced by a copy", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "a.txt")
			fi, err := os.Stat(p)
			mustT(t, err)
			mustT(t, os.WriteFile(p+".new", []byte("hello"), 0o644))
			mustT(t, os.Chtimes(p+".new", fi.ModTime(), fi.ModTime()))
			mustT(t, os.Rename(p+".new", p))
		}},
		{"a hard link from outside", func(t *testing.T, dir string) {
			mustT(t, os.Link(filepath.Join(dir, "a.txt"), filepath.Join(filepath.Dir(dir), "outside")))
		}},
		{"the target removed", func(t *testing.T, dir string) { mustT(t, os.RemoveAll(dir)) }},
		{"the target touched", func(t *testing.T, dir string) {
			now := time.Now()
			mustT(t, os.Chtimes(dir, now, now))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "c")
			smallTree(t, dir)
			paths := []string{dir, filepath.Join(filepath.Dir(dir), "absent")}
			before := settled(t, paths)
			if again := settled(t, paths); again.digest != before.digest {
				t.Fatal("two walks of an unchanged tree differ")
			}
			tc.change(t, dir)
			after, err := digestTree(t.Context(), paths)
			mustT(t, err)
			if after.digest == before.digest {
				t.Fatal("the digest did not change")
			}
		})
	}
}

// The digest is the same whatever order the parallel walk reads directories in, and it tells
// a missing target from an empty one and the targets' order apart.
func TestDigestIsDeterministic(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	wide(t, a, 40, 5)
	mustT(t, os.Mkdir(b, 0o755))
	first := settled(t, []string{a, b})
	if first.entries != 2+40+40*5 || first.bytes != 40*5*3 {
		t.Fatalf("walked %d entries, %d bytes", first.entries, first.bytes)
	}
	for range 20 {
		if tr := settled(t, []string{a, b}); tr.digest != first.digest {
			t.Fatal("walks of an unchanged tree differ")
		}
	}
	swapped := settled(t, []string{b, a})
	missing := settled(t, []string{a, filepath.Join(dir, "none")})
	if swapped.digest == first.digest || missing.digest == first.digest {
		t.Fatal("the digest ignores the targets' order or tells no empty target from a missing one")
	}
}

// wide writes dirs directories of files files each below dir.
func wide(t testing.TB, dir string, dirs, files int) {
	t.Helper()
	for i := range dirs {
		d := filepath.Join(dir, fmt.Sprintf("pkg%d", i))
		mustT(t, os.MkdirAll(d, 0o755))
		for j := range files {
			mustT(t, os.WriteFile(filepath.Join(d, fmt.Sprintf("f%d.js", j)), []byte("abc"), 0o644))
		}
	}
}

// What a save must not stamp: entries its archive does not keep as they are.
func TestDigestNotesForeignEntries(t *testing.T) {
	for _, tc := range []struct {
		name    string
		make    func(t *testing.T, dir string)
		foreign bool
	}{
		{"files, directories, symlinks", func(*testing.T, string) {}, false},
		{"a setuid file", func(t *testing.T, dir string) { mustT(t, os.Chmod(filepath.Join(dir, "a.txt"), os.ModeSetuid|0o755)) }, true},
		{"a sticky directory", func(t *testing.T, dir string) { mustT(t, os.Chmod(filepath.Join(dir, "sub"), os.ModeSticky|0o777)) }, true},
		{"a FIFO", func(t *testing.T, dir string) { mustT(t, mkfifo(filepath.Join(dir, "fifo"))) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "c")
			smallTree(t, dir)
			tc.make(t, dir)
			tr, err := digestTree(t.Context(), []string{dir})
			mustT(t, err)
			if tr.foreign != tc.foreign {
				t.Fatalf("foreign = %v, want %v", tr.foreign, tc.foreign)
			}
		})
	}
}

// BenchmarkDigestTree walks a tree shaped like node_modules (45k entries) or, with
// S3_CACHE_BENCH_TREE, the tree it names.
func BenchmarkDigestTree(b *testing.B) {
	dir := os.Getenv("S3_CACHE_BENCH_TREE")
	if dir == "" {
		dir = filepath.Join(b.TempDir(), "node_modules")
		wide(b, dir, 5000, 8)
	}
	var entries int64
	for b.Loop() {
		tr, err := digestTree(b.Context(), []string{dir})
		mustT(b, err)
		entries = tr.entries
	}
	b.ReportMetric(float64(entries), "entries")
}

func mkfifo(p string) error { return unix.Mkfifo(p, 0o644) }

// canceledAfter is a context whose Err is nil for its first n calls and context.Canceled from
// then on: cancelled while a walk is inside a directory, whatever the timing.
type canceledAfter struct {
	context.Context
	n     int32
	calls atomic.Int32
}

func (c *canceledAfter) Err() error {
	if c.calls.Add(1) > c.n {
		return context.Canceled
	}
	return nil
}

// A walk cancelled while it describes a large flat directory stops there, not after its last
// entry: a cancelled early walk holds up the download that follows it by a millisecond at most.
func TestWalkStopsInsideALargeDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "flat")
	mustT(t, os.Mkdir(dir, 0o755))
	for i := range 4 * cancelEvery {
		mustT(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%04d", i)), nil, 0o644))
	}
	whole, err := digestTree(t.Context(), []string{dir})
	mustT(t, err)
	if whole.entries != 4*cancelEvery+1 {
		t.Fatalf("walked %d entries, want %d", whole.entries, 4*cancelEvery+1)
	}
	// One look passes (the directory's, as its walk begins); the next is inside it.
	ctx := &canceledAfter{Context: t.Context(), n: 1}
	if _, err := digestTree(ctx, []string{dir}); !errors.Is(err, context.Canceled) {
		t.Fatalf("walk cancelled inside the directory: %v, want context.Canceled", err)
	}
	if got := ctx.calls.Load(); got != 2 {
		t.Fatalf("the walk looked at its context %d times, want 2 (it stopped at the first look inside)", got)
	}
}

// A walker holds a descriptor per directory level it walks inline, so a process allowed few
// descriptors runs fewer walkers.
func TestWalkerLimitFollowsDescriptors(t *testing.T) {
	var saved unix.Rlimit
	mustT(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &saved))
	t.Cleanup(func() { mustT(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &saved)) })
	for _, tc := range []struct {
		soft uint64
		want int
	}{
		{soft: 64, want: 2},
		{soft: 512, want: 4},
		{soft: 1024, want: 8},
		// descriptors to spare: minWalkers, or one walker per core where there are more
		{soft: uint64(128 * (max(minWalkers, runtime.GOMAXPROCS(0)) + 1)), want: max(minWalkers, runtime.GOMAXPROCS(0))},
	} {
		lim := unix.Rlimit{Cur: tc.soft, Max: saved.Max}
		mustT(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &lim))
		if got := walkerLimit(); got != tc.want {
			t.Errorf("with %d descriptors: %d walkers, want %d", tc.soft, got, tc.want)
		}
	}
}
