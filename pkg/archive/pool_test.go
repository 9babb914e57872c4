package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// settledGoroutines waits until the number of goroutines is back to at most
// base, and fails the test if it is not within a few seconds: Extract must
// not leave a writer running.
func settledGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, want at most %d:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// makeManyFiles fills dir with files in 40 directories, each file's
// content naming it, every seventh file hard linked from another directory.
func makeManyFiles(t testing.TB, dir string, files int) {
	t.Helper()
	mtime := time.Unix(1_650_000_000, 0)
	for i := range files {
		p := filepath.Join(dir, fmt.Sprintf("d%02d/f%04d", i%40, i))
		size := (i * 131) % 9000
		writeFile(t, p, strings.Repeat(fmt.Sprintf("%d,", i), size+1)[:size], fs.FileMode(0o600+i%2*0o44), mtime.Add(time.Duration(i)*time.Nanosecond))
	}
	for i := 0; i < files; i += 7 {
		p := filepath.Join(dir, fmt.Sprintf("d%02d/f%04d", i%40, i))
		if err := os.Link(p, filepath.Join(dir, fmt.Sprintf("d%02d/link%04d", (i+13)%40, i))); err != nil {
			t.Fatal(err)
		}
	}
}

func TestExtractManyFilesWithHardLinks(t *testing.T) {
	// A small in-flight budget makes the reader wait for the writers, and
	// one writer or many change which file is still queued when its links
	// are met.
	for _, opts := range []extractOptions{
		{writers: 1, inFlight: defaultInFlight},
		{writers: 16, inFlight: 64 << 10},
		{writers: defaultWriters, inFlight: defaultInFlight},
	} {
		t.Run(fmt.Sprintf("writers=%d,inFlight=%d", opts.writers, opts.inFlight), func(t *testing.T) {
			tmp := tempDir(t)
			src := filepath.Join(tmp, "src")
			makeManyFiles(t, src, 300)
			data, _ := mustWrite(t, []string{src}, Zstd, 0, nil)
			target := filepath.Join(tmp, "target")
			base := runtime.NumGoroutine()
			st, err := extract(context.Background(), bytes.NewReader(data), []string{target}, Zstd, nil, opts)
			if err != nil {
				t.Fatal(err)
			}
			settledGoroutines(t, base)
			assertSameTree(t, src, target)
			if want := int64(300 + (300+6)/7 + 1 + 40); st.Entries != want { // files, links, the root, d00..d39
				t.Errorf("Entries = %d, want %d", st.Entries, want)
			}
			for i := 0; i < 300; i += 7 {
				a, err := os.Stat(filepath.Join(target, fmt.Sprintf("d%02d/f%04d", i%40, i)))
				if err != nil {
					t.Fatal(err)
				}
				b, err := os.Stat(filepath.Join(target, fmt.Sprintf("d%02d/link%04d", (i+13)%40, i)))
				if err != nil {
					t.Fatal(err)
				}
				if !os.SameFile(a, b) {
					t.Errorf("file %d and its link are not the same inode", i)
				}
			}
			assertNoLeftovers(t, tmp)
		})
	}
}

func TestExtractHardLinkRightAfterItsFile(t *testing.T) {
	// The link entry follows its file at once: the file is most likely
	// still in a writer's queue when the reader meets the link.
	var entries []tarEntry
	entries = append(entries, tarEntry{name: "0/", typ: tar.TypeDir, mode: 0o755})
	for i := range 200 {
		f := fmt.Sprintf("0/f%03d", i)
		entries = append(entries,
			tarEntry{name: f, typ: tar.TypeReg, body: strings.Repeat("x", i*50), mode: 0o640},
			tarEntry{name: f + ".link", typ: tar.TypeLink, link: f})
	}
	target := filepath.Join(tempDir(t), "target")
	if _, err := Extract(context.Background(), bytes.NewReader(rawTar(t, entries)), []string{target}, None, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		f := filepath.Join(target, fmt.Sprintf("f%03d", i))
		b, err := os.ReadFile(f + ".link")
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != i*50 {
			t.Errorf("%s.link: %d bytes, want %d", f, len(b), i*50)
		}
		info, err := os.Lstat(f + ".link")
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o640 || !info.ModTime().Equal(time.Unix(1_600_000_000, 0)) {
			t.Errorf("%s.link: mode %v, mtime %v", f, info.Mode(), info.ModTime())
		}
	}
}

func TestExtractWriterFailureDiscardsEverything(t *testing.T) {
	errInjected := errors.New("injected write failure")
	for _, tc := range []struct {
		name   string
		failAt int64 // the failAt-th file a writer creates fails
	}{
		{"first file", 1},
		{"a middle file", 150},
		{"the last file", 300},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := tempDir(t)
			src := filepath.Join(tmp, "src")
			makeManyFiles(t, src, 300)
			data, _ := mustWrite(t, []string{src}, Zstd, 0, nil)
			parent, target := newTargetParent(t)
			before := snapshot(t, parent)
			var n atomic.Int64
			opts := extractOptions{writers: defaultWriters, inFlight: 256 << 10, beforeWrite: func(string) error {
				if n.Add(1) == tc.failAt {
					return errInjected
				}
				return nil
			}}
			base := runtime.NumGoroutine()
			_, err := extract(context.Background(), bytes.NewReader(data), []string{target}, Zstd, nil, opts)
			if !errors.Is(err, errInjected) {
				t.Fatalf("err = %v, want the injected failure", err)
			}
			if errors.Is(err, errPoolAborted) || errors.Is(err, ErrCorrupt) {
				t.Errorf("err = %v: not the writer's own failure", err)
			}
			settledGoroutines(t, base)
			if got := snapshot(t, parent); got != before {
				t.Errorf("target's parent changed:\n%s\nwant:\n%s", got, before)
			}
			assertNoLeftovers(t, parent)
		})
	}
}

func TestExtractCancelledWhileWriting(t *testing.T) {
	tmp := tempDir(t)
	src := filepath.Join(tmp, "src")
	makeManyFiles(t, src, 300)
	data, _ := mustWrite(t, []string{src}, Zstd, 0, nil)
	parent, target := newTargetParent(t)
	before := snapshot(t, parent)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var n atomic.Int64
	opts := extractOptions{writers: defaultWriters, inFlight: defaultInFlight, beforeWrite: func(string) error {
		if n.Add(1) == 100 {
			cancel() // as the agent's SIGTERM would, mid-extraction
		}
		return nil
	}}
	base := runtime.NumGoroutine()
	_, err := extract(ctx, bytes.NewReader(data), []string{target}, Zstd, nil, opts)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	settledGoroutines(t, base)
	if got := snapshot(t, parent); got != before {
		t.Errorf("target's parent changed:\n%s\nwant:\n%s", got, before)
	}
	assertNoLeftovers(t, parent)
}

func TestExtractFilesLargerThanTheBudget(t *testing.T) {
	tmp := tempDir(t)
	src := filepath.Join(tmp, "src")
	mtime := time.Unix(1_700_000_000, 1)
	for i, size := range []int{0, 1, 4095, 4096, 4097, 100 << 10, maxPooledFile, maxPooledFile + 1, 3<<20 + 5} {
		b := make([]byte, size)
		for j := range b {
			b[j] = byte(j*31 + i)
		}
		writeFile(t, filepath.Join(src, fmt.Sprintf("f%d", size)), string(b), 0o644, mtime)
	}
	data, _ := mustWrite(t, []string{src}, Gzip, 0, nil)
	for _, budget := range []int64{1, 8 << 10, defaultInFlight} {
		t.Run(fmt.Sprint(budget), func(t *testing.T) {
			target := filepath.Join(tempDir(t), "target")
			opts := extractOptions{writers: 4, inFlight: budget}
			if _, err := extract(context.Background(), bytes.NewReader(data), []string{target}, Gzip, nil, opts); err != nil {
				t.Fatal(err)
			}
			assertSameTree(t, src, target)
		})
	}
}

func TestBufClass(t *testing.T) {
	for _, tc := range []struct {
		size int64
		want int
	}{
		{1, 0}, {4096, 0}, {4097, 1}, {8192, 1}, {8193, 2}, {maxPooledFile, numBufClass - 1},
	} {
		if got := bufClass(tc.size); got != tc.want {
			t.Errorf("bufClass(%d) = %d, want %d", tc.size, got, tc.want)
		}
	}
}

// Free content buffers are kept per size class, up to keep bytes, and handed out again before
// any new one; what does not fit is left to the collector.
func TestSizedBuffers(t *testing.T) {
	s := sizedBuffers{keep: 3 << 12} // three 4 KiB buffers, or one 8 KiB and one 4 KiB
	a, ca := s.get(100)
	b, cb := s.get(5000)
	if len(a) != 100 || cap(a) != 4096 || len(b) != 5000 || cap(b) != 8192 || ca == cb {
		t.Fatalf("got %d/%d (class %d) and %d/%d (class %d) bytes", len(a), cap(a), ca, len(b), cap(b), cb)
	}
	s.put(a, ca)
	s.put(b, cb)
	if got, _ := s.get(4096); &got[0] != &a[0] {
		t.Error("a 4 KiB buffer was allocated while one was free")
	}
	if got, _ := s.get(8000); &got[0] != &b[0] {
		t.Error("an 8 KiB buffer was allocated while one was free")
	}
	// Over keep: the third 8 KiB buffer given back is dropped.
	bufs := make([][]byte, 3)
	for i := range bufs {
		bufs[i], _ = s.get(8192)
	}
	for _, buf := range bufs {
		s.put(buf, cb)
	}
	if s.kept != 2<<12 || len(s.free[cb]) != 1 {
		t.Fatalf("kept %d bytes in %d buffers, want one of 8 KiB", s.kept, len(s.free[cb]))
	}
	if got, _ := s.get(1); &got[0] == &bufs[0][0] {
		t.Error("a buffer of another class was handed out")
	}
}
