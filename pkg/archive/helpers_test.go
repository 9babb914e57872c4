package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

var allCompressions = []Compression{Zstd, Gzip, None}

// warnings collects the messages given to a Warner.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

// Warnf records a warning.
func (w *warnings) Warnf(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, fmt.Sprintf(format, args...))
}

// Infof records nothing: the tests look at warnings.
func (w *warnings) Infof(string, ...any) {}

func (w *warnings) contains(sub string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range w.msgs {
		if strings.Contains(m, sub) {
			return true
		}
	}
	return false
}

// tempDir is t.TempDir, but also works when the test leaves read-only
// directories behind and does not run as root.
func tempDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() { makeDirsWritable(dir) }) // runs before TempDir's removal
	return dir
}

// writeFile creates a file with content, mode and mtime, creating parents.
func writeFile(t testing.TB, p, content string, mode fs.FileMode, mtime time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t testing.TB, target, p string) {
	t.Helper()
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

// makeSampleTree fills dir with every kind of content the package handles.
func makeSampleTree(t testing.TB, dir string) {
	t.Helper()
	mtime := time.Unix(1_600_000_000, 123_456_789)
	writeFile(t, filepath.Join(dir, "a/b/c/deep.txt"), "deep", 0o644, mtime)
	writeFile(t, filepath.Join(dir, "emptyfile"), "", 0o644, mtime)
	writeFile(t, filepath.Join(dir, "exec.sh"), "#!/bin/sh\necho hi\n", 0o755, mtime.Add(time.Second))
	writeFile(t, filepath.Join(dir, "readonly.txt"), "read only", 0o444, mtime.Add(2*time.Second))
	writeFile(t, filepath.Join(dir, "setuid"), "setuid", 0o4755, mtime)
	writeFile(t, filepath.Join(dir, "rodir/inner.txt"), "inside a read-only dir", 0o444, mtime)
	writeFile(t, filepath.Join(dir, "rodir/sub/more.txt"), "more", 0o644, mtime)
	rnd := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 3<<20+17) // more than the 1 MiB copy buffer
	for i := range big {
		big[i] = byte(rnd.IntN(256))
	}
	writeFile(t, filepath.Join(dir, "big.bin"), string(big), 0o600, mtime)
	writeFile(t, filepath.Join(dir, "hard1"), "hard linked", 0o640, mtime)
	if err := os.Link(filepath.Join(dir, "hard1"), filepath.Join(dir, "a/hard2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustSymlink(t, "a/b/c/deep.txt", filepath.Join(dir, "link-rel"))
	mustSymlink(t, "/nonexistent/s3-cache-test/target", filepath.Join(dir, "link-abs"))
	mustSymlink(t, "does-not-exist", filepath.Join(dir, "dangling"))
	mustSymlink(t, "../..", filepath.Join(dir, "a/b/up"))
	makeFifo(t, filepath.Join(dir, "fifo")) // skipped with a warning

	// Directory modes and mtimes last, deepest first.
	dirMtime := time.Unix(1_500_000_000, 987_654_321)
	for _, d := range []struct {
		rel  string
		mode fs.FileMode
	}{
		{"a/b/c", 0o755}, {"a/b", 0o750}, {"a", 0o755}, {"empty", 0o700},
		{"rodir/sub", 0o555}, {"rodir", 0o555}, {".", 0o555},
	} {
		p := filepath.Join(dir, d.rel)
		if err := os.Chmod(p, d.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, dirMtime, dirMtime); err != nil {
			t.Fatal(err)
		}
	}
}

// assertSameTree checks that got holds what want holds: same names, types,
// permission bits (without setuid/setgid/sticky), sizes, contents, symlink
// targets and mtimes (except symlinks'). FIFOs, sockets and devices in want
// are expected to be absent from got.
func assertSameTree(t *testing.T, want, got string) {
	t.Helper()
	wantNames := map[string]bool{}
	err := filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		wi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if wi.Mode().Type()&(fs.ModeNamedPipe|fs.ModeSocket|fs.ModeDevice|fs.ModeCharDevice) != 0 {
			return nil
		}
		wantNames[rel] = true
		gi, err := os.Lstat(filepath.Join(got, rel))
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			return nil
		}
		if wi.Mode().Type() != gi.Mode().Type() {
			t.Errorf("%s: type %v, want %v", rel, gi.Mode().Type(), wi.Mode().Type())
			return nil
		}
		switch {
		case wi.Mode()&fs.ModeSymlink != 0:
			wl, _ := os.Readlink(p)
			gl, _ := os.Readlink(filepath.Join(got, rel))
			if wl != gl {
				t.Errorf("%s: symlink to %q, want %q", rel, gl, wl)
			}
			return nil
		case wi.Mode().IsRegular():
			wb, _ := os.ReadFile(p)
			gb, err := os.ReadFile(filepath.Join(got, rel))
			if err != nil {
				t.Errorf("%s: %v", rel, err)
			} else if !bytes.Equal(wb, gb) {
				t.Errorf("%s: content differs (%d bytes, want %d)", rel, len(gb), len(wb))
			}
		}
		if wp, gp := wi.Mode().Perm(), gi.Mode().Perm(); wp != gp {
			t.Errorf("%s: mode %v, want %v", rel, gp, wp)
		}
		if gi.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
			t.Errorf("%s: mode %v has special bits", rel, gi.Mode())
		}
		if !wi.ModTime().Equal(gi.ModTime()) {
			t.Errorf("%s: mtime %v, want %v", rel, gi.ModTime(), wi.ModTime())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(got, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(got, p)
		if !wantNames[rel] {
			t.Errorf("%s: unexpected", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// snapshot describes everything under dir (names, types, modes, sizes,
// contents, symlink targets, mtimes), to check that dir was not changed. The
// mtime of dir itself is left out: creating and removing staging directories
// in it changes it.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	return listTree(t, dir, nil, map[string]bool{".": true})
}

// listTree describes everything under dir (names, types, modes, mtimes,
// contents, symlink targets), except below the relative paths in skip, and
// without the mtime of the entries in noMtime. A missing dir is "absent".
func listTree(t testing.TB, dir string, skip, noMtime map[string]bool) string {
	t.Helper()
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return "absent"
	}
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if skip[rel] {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		line := fmt.Sprintf("%q %v", rel, info.Mode())
		if !noMtime[rel] {
			line += " " + strconv.FormatInt(info.ModTime().UnixNano(), 10)
		}
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			line += fmt.Sprintf(" -> %q", l)
		case info.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			line += fmt.Sprintf(" %q", b)
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// assertNoLeftovers checks that no staging or old directory is left in dir.
func assertNoLeftovers(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".s3-cache-") {
			t.Errorf("leftover %s in %s", e.Name(), dir)
		}
	}
}

// mustWrite archives sources and returns the compressed stream.
func mustWrite(t testing.TB, sources []string, c Compression, level int, log Logger) ([]byte, Stats) {
	t.Helper()
	var buf bytes.Buffer
	st, err := Write(context.Background(), &buf, sources, c, level, log)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	return buf.Bytes(), st
}

// tarEntry is one entry of a hand-made archive.
type tarEntry struct {
	name string
	typ  byte
	link string
	body string
	mode int64
}

// rawTar builds a tar stream from entries, with the checksum trailer and
// the end-of-archive marker, as Write ends its archives.
func rawTar(t testing.TB, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	sum := newChecksumWriter(&buf)
	tw := tar.NewWriter(sum)
	writeEntries(t, tw, entries)
	if err := finishTar(tw, sum); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// unsealedTar builds a tar stream from entries with the end-of-archive
// marker but without the checksum trailer.
func unsealedTar(t testing.TB, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	writeEntries(t, tw, entries)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// writeEntries writes entries to tw.
func writeEntries(t testing.TB, tw *tar.Writer, entries []tarEntry) {
	t.Helper()
	for _, e := range entries {
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		hdr := &tar.Header{
			Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: mode,
			Size: int64(len(e.body)), ModTime: time.Unix(1_600_000_000, 0), Format: tar.FormatPAX,
		}
		if e.typ != tar.TypeReg {
			hdr.Size = 0
		}
		if e.typ == tar.TypeXGlobalHeader {
			hdr = &tar.Header{Name: e.name, Typeflag: e.typ, PAXRecords: map[string]string{"comment": "x"}, Format: tar.FormatPAX}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("header %q: %v", e.name, err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
}

// compress compresses raw (a tar stream) with c.
func compress(t testing.TB, c Compression, raw []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	switch c {
	case Zstd:
		enc, err := zstd.NewWriter(&buf, zstd.WithEncoderCRC(true))
		if err != nil {
			t.Fatal(err)
		}
		w = enc
	case Gzip:
		w = gzip.NewWriter(&buf)
	case None:
		w = nopWriteCloser{&buf}
	}
	if _, err := w.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// newTargetParent returns a parent directory holding an existing target
// "target" with some content, and a directory "outside" that hostile
// archives aim at.
func newTargetParent(t *testing.T) (parent, target string) {
	t.Helper()
	parent = tempDir(t)
	target = filepath.Join(parent, "target")
	mtime := time.Unix(1_400_000_000, 0)
	writeFile(t, filepath.Join(target, "keep.txt"), "keep me", 0o644, mtime)
	writeFile(t, filepath.Join(target, "sub/file"), "sub file", 0o600, mtime)
	if err := os.Mkdir(filepath.Join(parent, "outside"), 0o755); err != nil {
		t.Fatal(err)
	}
	return parent, target
}

// dirNames returns the names in dir, sorted.
func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
