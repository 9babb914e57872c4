//go:build linux || darwin

package cache

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/archive"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cachekey"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
)

// A save's tree is recorded only if no change time in it is later than the save's start less
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
		{"foreign entries", last.Add(time.Hour), func(w *saveWatch) { w.read.foreign = true }, 0, "entries the archive does not keep"},
		{"the walk failed", last.Add(time.Hour), func(w *saveWatch) { w.err = errors.New("walk failed") }, 0, "walk failed"},
		{"never recorded", last.Add(time.Hour), func(w *saveWatch) { w.err = errNotRecorded }, 0, errNotRecorded.Error()},
		{"the clock slewed", last.Add(time.Hour), nil, clockSlack, ""},
		{"the clock set back", last.Add(time.Hour), nil, clockSlack + time.Millisecond, "the clock was set back by 11ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &saveWatch{began: tc.began, roots: append([]rootID(nil), roots...), read: walk}
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
// leaves the archive part of the file, with no change time later than the save's start: the
// tree the save records must then be one the next restore's walk does not find (the file's size
// differs), so that restore is a real one.
func TestSaveDuringAWriteRecordsATreeTheNextWalkRefuses(t *testing.T) {
	for size := 64 << 20; ; size *= 4 {
		read, final, recorded, after := saveDuringWrite(t, size)
		switch {
		case read < final:
			if recorded == after {
				t.Fatalf("the archive read %d bytes of a file that grew to %d, and the walk after the write finds the tree the save recorded", read, final)
			}
			return
		case size >= 1<<30:
			t.Fatalf("a write of %d bytes ended before the archive read its file: no write lasts long enough here to test this", size)
		}
	}
}

// saveDuringWrite archives a tree with a file that a single write of size bytes extends, begun
// a window before the save: the bytes of files the archive read, those the tree holds once the
// write is over, the digest of the tree the save recorded and that of a walk after the write.
func saveDuringWrite(t *testing.T, size int) (read, final int64, recorded, after [32]byte) {
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
	rec := w.recorder(len(c.Paths))
	stats, err := archive.WriteObserved(t.Context(), io.Discard, c.Paths, archive.None, 0, nil, rec)
	mustT(t, err)
	mustT(t, <-wrote)
	wrote <- nil
	w.written(rec)
	now := time.Now()
	mustT(t, w.verdict(now, now.Sub(w.began)))
	walk, err := digestTree(t.Context(), c.Paths)
	mustT(t, err)
	return stats.Bytes, walk.bytes, w.read.digest, walk.digest
}

// What an archive records of the tree it stores is the tree a walk finds, digest, totals and
// roots, in every shape a tree can take: hard links within a path and across paths, symlinks,
// empty files and directories, a path that is a file, a symlink or absent.
func TestRecordedTreeIsTheWalk(t *testing.T) {
	base := t.TempDir()
	a, b, file, link := filepath.Join(base, "a"), filepath.Join(base, "b"), filepath.Join(base, "f"), filepath.Join(base, "l")
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
	mustT(t, os.MkdirAll(filepath.Join(b, "z", "empty dir"), 0o755))
	mustT(t, os.WriteFile(filepath.Join(b, "z", "name\nwith\nbytes\xff"), []byte("odd"), 0o600))
	mustT(t, os.Symlink("a", link))
	for _, paths := range [][]string{{a}, {b}, {file}, {link}, {a, b}, {a, file, b}, {file, filepath.Join(base, "absent")}, {filepath.Join(base, "absent"), b}} {
		walk, err := digestTree(t.Context(), paths)
		mustT(t, err)
		rec := newTreeRecorder(len(paths))
		_, err = archive.WriteObserved(t.Context(), io.Discard, paths, archive.None, 0, nil, rec)
		mustT(t, err)
		got, err := rec.tree()
		mustT(t, err)
		if got.digest != walk.digest || got.entries != walk.entries || got.bytes != walk.bytes ||
			got.maxCtime != walk.maxCtime || !sameDevs(got.devs, walk.devs) || got.foreign != walk.foreign || !slices.Equal(got.roots, walk.roots) {
			t.Errorf("%v: recorded %+v, the walk finds %+v", paths, got, walk)
		}
	}
}

// A save restarted after a conflict writes another archive, and its stamp names the objects of
// both: it records a tree only if every archive read the same one, and never after an archive
// whose tree was refused.
func TestEveryArchiveOfASaveMustReadOneTree(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	smallTree(t, dir)
	fifo := filepath.Join(dir, "sub", "fifo")
	archiveOf := func() *treeRecorder {
		rec := newTreeRecorder(1)
		_, err := archive.WriteObserved(t.Context(), io.Discard, []string{dir}, archive.None, 0, nil, rec)
		mustT(t, err)
		return rec
	}
	for _, tc := range []struct {
		name          string
		first, second func() // before each archive
		want          string // a part of the refusal; "": none
	}{
		{"the same tree twice", nil, nil, ""},
		{"a file grew between them", nil, func() { appendTo(t, filepath.Join(dir, "a.txt"), "!") }, "different trees"},
		{"the first left an entry out", func() { mustT(t, unix.Mkfifo(fifo, 0o644)) }, func() { mustT(t, os.Remove(fifo)) }, "left out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Cache{Paths: []string{dir}}
			c.Options.StampDir = t.TempDir()
			w := c.watchSave()
			for _, before := range []func(){tc.first, tc.second} {
				if before != nil {
					before()
				}
				w.written(archiveOf())
			}
			w.began = time.Unix(0, w.read.maxCtime).Add(time.Hour) // no change time in the window
			got := w.verdict(w.began.Add(time.Second), time.Second)
			if (got == nil) != (tc.want == "") || got != nil && !strings.Contains(got.Error(), tc.want) {
				t.Fatalf("verdict %v, want %q", got, tc.want)
			}
		})
	}
}

func appendTo(t *testing.T, p, s string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	mustT(t, err)
	_, err = f.WriteString(s)
	mustT(t, errors.Join(err, f.Close()))
}

// An archive that leaves out an entry a walk would record (a FIFO here) records no tree.
func TestRecordedTreeRefusesWhatTheArchiveLeftOut(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	smallTree(t, dir)
	mustT(t, unix.Mkfifo(filepath.Join(dir, "sub", "fifo"), 0o644))
	rec := newTreeRecorder(1)
	_, err := archive.WriteObserved(t.Context(), io.Discard, []string{dir}, archive.None, 0, nil, rec)
	mustT(t, err)
	if _, err := rec.tree(); err == nil || !strings.Contains(err.Error(), "the archive left out 0/sub/fifo") {
		t.Fatalf("recorded tree: %v, want the archive left out 0/sub/fifo", err)
	}
}

// A restore walks its paths early, while it looks the keys up, only when the stamp names one of
// the candidate keys; the early walk finds what a walk finds, and once stopped (before a
// download) it stands for nothing.
func TestWalkEarly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node_modules")
	smallTree(t, dir)
	c := New(nil, nil, []string{dir}, config.CacheOptions{StampDir: filepath.Join(t.TempDir(), "warm")})
	want, err := digestTree(t.Context(), c.Paths)
	mustT(t, err)
	exact := cachekey.Key{Name: "p/exact.tar.zst"}
	wide := cachekey.Key{Name: "p/wide.tar.zst"}
	family := cachekey.Key{Name: "p/exact.tar.zst", Newest: true}
	for _, tc := range []struct {
		name       string
		stamped    []string // the stamp's keys; nil: no stamp
		candidates []cachekey.Key
		walks      bool
	}{
		{"no stamp", nil, []cachekey.Key{exact, wide}, false},
		{"the exact key stamped", []string{exact.Name}, []cachekey.Key{exact, wide}, true},
		{"a wider key stamped", []string{"p/other.tar.zst", wide.Name}, []cachekey.Key{exact, wide}, true},
		{"another key stamped", []string{"p/other.tar.zst"}, []cachekey.Key{exact, wide}, false},
		{"a family's name stamped", []string{exact.Name}, []cachekey.Key{family}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_ = os.RemoveAll(c.Options.StampDir)
			if tc.stamped != nil {
				var objs []stampObject
				for _, k := range tc.stamped {
					objs = append(objs, objectOf(k, `"etag"`))
				}
				c.write(want, objs)
			}
			w := c.walkEarly(t.Context(), tc.candidates)
			defer w.stop()
			if (w != nil) != tc.walks {
				t.Fatalf("walkEarly = %v, want a walk: %t", w, tc.walks)
			}
			got, err := w.result()
			if !tc.walks {
				if !errors.Is(err, errNoWalk) {
					t.Fatalf("result of no walk: %v", err)
				}
				return
			}
			if err != nil || got.digest != want.digest || got.entries != want.entries {
				t.Fatalf("early walk %+v, %v; a walk finds %+v", got, err, want)
			}
			w.stop()
			if _, err := w.result(); !errors.Is(err, errNoWalk) {
				t.Fatalf("result after stop: %v, want errNoWalk", err)
			}
		})
	}
}
