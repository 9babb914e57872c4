//go:build linux || darwin

package cache

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/archive"
)

// A save's walk is recorded only if no change time in it is later than the save's start less
// the window, the same inodes stand at the paths, nothing is foreign and the clock did not go
// back: the change times are a real tree's, the starts placed around its latest one.
func TestSaveVerdict(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	smallTree(t, dir)
	paths := []string{dir, filepath.Join(filepath.Dir(dir), "absent")}
	roots, err := rootIDs(paths)
	mustT(t, err)
	walk, err := digestTree(t.Context(), paths)
	mustT(t, err)
	last := time.Unix(0, walk.maxCtime)
	changed := errChanged.Error()
	for _, tc := range []struct {
		name  string
		began time.Time // the save's start
		edit  func(w *saveWatch)
		back  time.Duration // the wall clock's lag behind the monotonic clock over the save
		want  string        // a part of the refusal; "": none
	}{
		{"last changed long before", last.Add(time.Hour), nil, 0, ""},
		{"last changed a window before", last.Add(ctimeWindow), nil, 0, ""},
		{"last changed within the window", last.Add(ctimeWindow - time.Nanosecond), nil, 0, changed},
		{"changed just before", last.Add(time.Millisecond), nil, 0, changed},
		{"changed during the save", last.Add(-time.Second), nil, 0, changed},
		{"another directory at a path", last.Add(time.Hour), func(w *saveWatch) { w.roots[0].ino++ }, 0, changed},
		{"a path appeared", last.Add(time.Hour), func(w *saveWatch) { w.roots[0] = rootID{} }, 0, changed},
		{"a path disappeared", last.Add(time.Hour), func(w *saveWatch) { w.roots[1] = rootID{exists: true, ino: 1} }, 0, changed},
		{"foreign entries", last.Add(time.Hour), func(w *saveWatch) { w.walk.foreign = true }, 0, "entries the archive does not keep"},
		{"the walk failed", last.Add(time.Hour), func(w *saveWatch) { w.err = errors.New("walk failed") }, 0, "walk failed"},
		{"never walked", last.Add(time.Hour), func(w *saveWatch) { w.err = errNotWalked }, 0, errNotWalked.Error()},
		{"the archive read less than the walk found", last.Add(time.Hour), func(w *saveWatch) { w.reads[1]-- }, 0, changed},
		{"the archive read more than the walk found", last.Add(time.Hour), func(w *saveWatch) { w.reads[1]++ }, 0, changed},
		{"an archive before a restart read less", last.Add(time.Hour), func(w *saveWatch) { w.reads[0]-- }, 0, changed},
		{"the clock slewed", last.Add(time.Hour), nil, clockSlack, ""},
		{"the clock set back", last.Add(time.Hour), nil, clockSlack + time.Millisecond, "the clock was set back by 11ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &saveWatch{began: tc.began, roots: append([]rootID(nil), roots...), walk: walk, reads: []int64{walk.stored, walk.stored}}
			if tc.edit != nil {
				tc.edit(w)
			}
			elapsed := 5 * time.Second
			got := w.verdict(tc.began.Add(elapsed-tc.back), elapsed)
			if (got == nil) != (tc.want == "") || got != nil && !strings.Contains(got.Error(), tc.want) {
				t.Fatalf("verdict %v, want %q", got, tc.want)
			}
		})
	}
}

// The roots' identities, as rootIDs and a walk find them: the same for the same files, and
// another when a path stands for another file or for none.
func TestRootIDs(t *testing.T) {
	base := t.TempDir()
	dir, file := filepath.Join(base, "c"), filepath.Join(base, "f")
	smallTree(t, dir)
	mustT(t, os.WriteFile(file, nil, 0o644))
	paths := []string{dir, file, filepath.Join(base, "absent")}
	ids, err := rootIDs(paths)
	mustT(t, err)
	walk, err := digestTree(t.Context(), paths)
	mustT(t, err)
	if !ids[0].exists || !ids[1].exists || ids[2].exists || ids[0] == ids[1] {
		t.Fatalf("rootIDs %+v: want two files and nothing", ids)
	}
	for i := range ids {
		if walk.roots[i] != ids[i] {
			t.Fatalf("the walk's roots %+v, rootIDs %+v", walk.roots, ids)
		}
	}
	mustT(t, os.Rename(dir, filepath.Join(base, "moved")))
	smallTree(t, dir)
	again, err := rootIDs(paths)
	mustT(t, err)
	if again[0] == ids[0] || again[1] != ids[1] {
		t.Fatalf("after replacing %s: %+v, was %+v", dir, again, ids)
	}
}

// A write(2) stamps its file's change time once, as it begins, and the file grows as the write
// goes on. A write begun before a save and still going while the save's archive reads the file
// leaves the archive part of the file and the walk after it the whole, with no change time later
// than the save's start: the save must not record that walk for that archive.
func TestSaveVerdictSeesAWriteInProgress(t *testing.T) {
	for size := 64 << 20; ; size *= 4 {
		read, walked, err := saveDuringWrite(t, size)
		switch {
		case read < walked:
			if !errors.Is(err, errChanged) {
				t.Fatalf("the archive read %d bytes of files whose walk holds %d: verdict %v, want a change", read, walked, err)
			}
			return
		case size >= 1<<30:
			t.Fatalf("a write of %d bytes ended before the archive read its file: no write lasts long enough here to test this", size)
		}
	}
}

// saveDuringWrite makes the parts of a save of a tree with a file that a single write of size
// bytes extends, begun a window before the save: the bytes of files the archive read, those
// of the walk after it, and the walk's verdict.
func saveDuringWrite(t *testing.T, size int) (read, walked int64, verdict error) {
	dir := filepath.Join(t.TempDir(), "c")
	smallTree(t, dir)
	p := filepath.Join(dir, "growing")
	f, err := os.Create(p)
	mustT(t, err)
	defer os.Remove(p) // the disk space, at once
	defer f.Close()
	// The source: untouched anonymous memory, zeros with a page fault for each page, so that
	// the write takes a while and no memory.
	src, err := unix.Mmap(-1, 0, size, unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_ANON)
	mustT(t, err)
	defer func() { _ = unix.Munmap(src) }()
	wrote := make(chan error, 1)
	go func() {
		_, err := unix.Write(int(f.Fd()), src)
		wrote <- err
	}()
	defer func() { <-wrote }() // the write is over before src goes
	for {
		fi, err := os.Stat(p)
		mustT(t, err)
		if fi.Size() > 0 {
			break // the write began
		}
		time.Sleep(100 * time.Microsecond)
	}
	time.Sleep(ctimeWindow + 10*time.Millisecond) // its change time is older than the window

	c := &Cache{Paths: []string{dir}}
	c.Options.StampDir = t.TempDir()
	w := c.watchSave()
	stats, err := archive.Write(t.Context(), io.Discard, c.Paths, archive.None, 0, nil)
	mustT(t, err)
	mustT(t, <-wrote)
	wrote <- nil
	c.walked(t.Context(), w, stats)
	now := time.Now()
	return stats.Bytes, w.walk.bytes, w.verdict(now, now.Sub(w.began))
}

// An unchanged tree's walk finds in its files the bytes its archive reads, hard links included:
// a file with several names in one path once, in each path that has one of its names.
func TestWalkStoredIsWhatTheArchiveReads(t *testing.T) {
	base := t.TempDir()
	a, b, file := filepath.Join(base, "a"), filepath.Join(base, "b"), filepath.Join(base, "f")
	smallTree(t, a)
	smallTree(t, b)
	mustT(t, os.WriteFile(file, []byte("a file with a name in a and one in b"), 0o644))
	mustT(t, os.WriteFile(filepath.Join(a, "sub", "deep", "linked"), []byte("three names in a"), 0o644))
	for _, name := range []string{"one", "sub/two"} {
		mustT(t, os.Link(filepath.Join(a, "sub", "deep", "linked"), filepath.Join(a, name)))
	}
	mustT(t, os.Link(file, filepath.Join(a, "f")))
	mustT(t, os.Link(file, filepath.Join(b, "sub", "f")))
	mustT(t, os.WriteFile(filepath.Join(b, "empty"), nil, 0o644))
	for _, paths := range [][]string{{a}, {b}, {file}, {a, b}, {a, file, b}, {file, filepath.Join(base, "absent")}} {
		walk, err := digestTree(t.Context(), paths)
		mustT(t, err)
		stats, err := archive.Write(t.Context(), io.Discard, paths, archive.None, 0, nil)
		mustT(t, err)
		if walk.stored != stats.Bytes {
			t.Errorf("%v: the walk finds %d bytes, the archive reads %d", paths, walk.stored, stats.Bytes)
		}
	}
}
