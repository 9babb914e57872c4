//go:build linux

package archive

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// A file the walk saw as regular but that is, when a read-ahead worker opens
// it, a FIFO, a directory, a symlink or gone: the worker's descriptor is
// closed and its slot given back, whatever the writer decides.
func TestReadAheadOfAFileReplacedAfterTheWalk(t *testing.T) {
	dir := tempDir(t)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "dir")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	mustSymlink(t, "dir", filepath.Join(dir, "symlink"))
	writeFile(t, filepath.Join(dir, "regular"), "content", 0o644, time.Unix(1, 0))
	for _, tc := range []struct {
		name    string
		wantErr string // "" : skipped or stored
		warn    string
	}{
		{"fifo", "", "no longer a regular file"},
		{"dir", "", "no longer a regular file"},
		{"symlink", "", "no longer a regular file"},
		{"missing", "", "vanished"},
		{"regular", "", ""},
	} {
		before := openFDs(t)
		var buf bytes.Buffer
		var warns []string
		aw := &archiveWriter{ctx: context.Background(), tw: newTarWriter(newChecksumWriter(&buf)),
			warn: func(f string, a ...any) { warns = append(warns, f) }, obs: noObserver{}, links: map[fileID]string{}}
		slots := make(chan struct{}, 1)
		slots <- struct{}{}
		r := &fileRead{done: make(chan struct{}), slots: slots}
		openAhead(context.Background(), filepath.Join(dir, tc.name), r)
		err := aw.addRead("0/"+tc.name, filepath.Join(dir, tc.name), r)
		switch {
		case tc.wantErr == "" && err != nil, tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.wantErr)
		}
		if tc.warn != "" && (len(warns) != 1 || !strings.Contains(warns[0], tc.warn)) {
			t.Errorf("%s: warnings %q, want %q", tc.name, warns, tc.warn)
		}
		if len(slots) != 0 {
			t.Errorf("%s: slot not given back", tc.name)
		}
		if after := openFDs(t); after != before {
			t.Errorf("%s: %d descriptors open after, %d before", tc.name, after, before)
		}
	}
}

// A save that fails (the destination errors after k writes) or is cancelled
// at any point leaves no descriptor and no goroutine behind, for every
// compression, and never hangs.
func TestWriteLeavesNoDescriptorOrGoroutine(t *testing.T) {
	src := filepath.Join(tempDir(t), "src")
	mtime := time.Unix(1_700_000_000, 0)
	for i := range 400 {
		writeFile(t, filepath.Join(src, strconv.Itoa(i%5), strconv.Itoa(i)), string(testInput(i*97, uint64(i))), 0o644, mtime)
	}
	writeFile(t, filepath.Join(src, "big"), string(testInput(20<<20, 7)), 0o644, mtime)
	for i := range 100 {
		writeFile(t, filepath.Join(src, "z", strconv.Itoa(i)), string(testInput(i*7, uint64(i))), 0o644, mtime)
	}
	fdsBefore, grBefore := openFDs(t), runtime.NumGoroutine()
	check := func(what string) {
		t.Helper()
		settledGoroutines(t, grBefore)
		if n := openFDs(t); n != fdsBefore {
			t.Errorf("%s: %d descriptors, %d before", what, n, fdsBefore)
		}
	}
	for _, c := range []Compression{None, Gzip, Zstd} {
		done := make(chan error, 1)
		go func() {
			_, err := Write(context.Background(), writerFunc(func(p []byte) (int, error) { return len(p), nil }), []string{src}, c, 1, nil)
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: %v", c, err)
			}
		case <-time.After(60 * time.Second):
			buf := make([]byte, 1<<20)
			t.Fatalf("%s: hung\n%s", c, buf[:runtime.Stack(buf, true)])
		}
		check(string(c) + " succeeded")
	}
	errDest := errors.New("destination failed")
	for _, c := range []Compression{None, Gzip, Zstd} {
		for _, failAt := range []int64{1, 2, 3, 10, 100} {
			var writes atomic.Int64
			w := writerFunc(func(p []byte) (int, error) {
				if writes.Add(1) >= failAt {
					return 0, errDest
				}
				return len(p), nil
			})
			done := make(chan error, 1)
			go func() { _, err := Write(context.Background(), w, []string{src}, c, 1, nil); done <- err }()
			select {
			case err := <-done:
				if err == nil {
					// fine only if failAt was never reached
					if writes.Load() >= failAt {
						t.Errorf("%s fail at %d: write succeeded after its destination failed", c, failAt)
					}
				} else if !errors.Is(err, errDest) {
					t.Errorf("%s fail at %d: %v, want the destination's error", c, failAt, err)
				}
			case <-time.After(60 * time.Second):
				buf := make([]byte, 1<<20)
				t.Fatalf("%s fail at %d: hung\n%s", c, failAt, buf[:runtime.Stack(buf, true)])
			}
			check(string(c) + " fail at " + strconv.FormatInt(failAt, 10))
		}
		for _, after := range []time.Duration{0, time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond, 80 * time.Millisecond} {
			ctx, cancel := context.WithCancel(context.Background())
			timer := time.AfterFunc(after, cancel)
			done := make(chan error, 1)
			go func() {
				_, err := Write(ctx, writerFunc(func(p []byte) (int, error) { return len(p), nil }), []string{src}, c, 1, nil)
				done <- err
			}()
			select {
			case err := <-done:
				if err != nil && !errors.Is(err, context.Canceled) {
					t.Errorf("%s cancelled after %v: %v", c, after, err)
				}
			case <-time.After(60 * time.Second):
				buf := make([]byte, 1<<20)
				t.Fatalf("%s cancel after %v: hung\n%s", c, after, buf[:runtime.Stack(buf, true)])
			}
			timer.Stop()
			cancel()
			check(string(c) + " cancelled after " + after.String())
		}
	}
}
