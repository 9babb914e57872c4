package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	cases := []struct {
		c     Compression
		level int
	}{
		{Zstd, 0}, {Zstd, 1}, {Zstd, 19}, {Gzip, 0}, {Gzip, 9}, {None, 0},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s-level%d", tc.c, tc.level), func(t *testing.T) {
			tmp := tempDir(t)
			src := filepath.Join(tmp, "src")
			makeSampleTree(t, src)
			fileSrc := filepath.Join(tmp, "single.txt")
			writeFile(t, fileSrc, "a single file", 0o640, time.Unix(1_234_567_890, 5))
			src2 := filepath.Join(tmp, "src2")
			writeFile(t, filepath.Join(src2, "x/y.txt"), "second source", 0o644, time.Unix(1_300_000_000, 0))
			missing := filepath.Join(tmp, "missing")

			var ww warnings
			data, wst := mustWrite(t, []string{src, missing, fileSrc, src2}, tc.c, tc.level, &ww)
			if !ww.contains(missing + " does not exist") {
				t.Errorf("no warning about the missing source: %q", ww.msgs)
			}
			if os.PathSeparator == '/' && !ww.contains(filepath.Join(src, "fifo")) {
				t.Errorf("no warning about the fifo: %q", ww.msgs)
			}

			restore := filepath.Join(tmp, "restore")
			// t0 exists and is replaced wholesale, read-only directory included.
			t0 := filepath.Join(restore, "t0")
			writeFile(t, filepath.Join(t0, "only-old.txt"), "old", 0o644, time.Now())
			writeFile(t, filepath.Join(t0, "rodir/old.txt"), "old", 0o444, time.Now())
			for _, d := range []string{filepath.Join(t0, "rodir"), t0} {
				if err := os.Chmod(d, 0o555); err != nil {
					t.Fatal(err)
				}
			}
			// t1's index (the missing source) has no entry: left untouched.
			t1 := filepath.Join(restore, "t1")
			writeFile(t, filepath.Join(t1, "untouched.txt"), "untouched", 0o644, time.Unix(1_000_000_000, 0))
			t1Before := snapshot(t, t1)
			// t2 receives a single file; t3's parents do not exist yet.
			t2 := filepath.Join(restore, "t2")
			t3 := filepath.Join(restore, "new", "deeper", "t3")

			var ew warnings
			est, err := Extract(context.Background(), bytes.NewReader(data), []string{t0, t1, t2, t3}, tc.c, &ew)
			if err != nil {
				t.Fatalf("Extract: %v", err)
			}
			assertSameTree(t, src, t0)
			if got := snapshot(t, t1); got != t1Before {
				t.Errorf("t1 changed:\n%s\nwant:\n%s", got, t1Before)
			}
			assertSameTree(t, fileSrc, t2)
			assertSameTree(t, src2, t3)

			h1, err := os.Stat(filepath.Join(t0, "hard1"))
			if err != nil {
				t.Fatal(err)
			}
			h2, err := os.Stat(filepath.Join(t0, "a", "hard2"))
			if err != nil {
				t.Fatal(err)
			}
			if !os.SameFile(h1, h2) {
				t.Error("hard1 and a/hard2 are not the same file after restore")
			}
			if wst != est {
				t.Errorf("Extract stats %+v, Write stats %+v", est, wst)
			}
			if wst.Bytes < 3<<20 || wst.Entries < 20 {
				t.Errorf("implausible stats %+v", wst)
			}
			assertNoLeftovers(t, restore)
			assertNoLeftovers(t, filepath.Dir(t3))
		})
	}
}

// TestWriteHeaders checks what Write records, on the raw tar stream.
func TestWriteHeaders(t *testing.T) {
	tmp := tempDir(t)
	src := filepath.Join(tmp, "src")
	makeSampleTree(t, src)
	data, _ := mustWrite(t, []string{src}, None, 0, nil)

	headers := map[string]*tar.Header{}
	var names []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" || hdr.Gname != "" {
			t.Errorf("%s: owner recorded: %d/%d %q/%q", hdr.Name, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname)
		}
		if hdr.Mode&^0o777 != 0 {
			t.Errorf("%s: mode %o has more than permission bits", hdr.Name, hdr.Mode)
		}
		headers[hdr.Name] = hdr
		names = append(names, hdr.Name)
	}
	if names[0] != "0/" {
		t.Errorf("first entry %q, want 0/", names[0])
	}
	// The last entry is the checksum trailer: a PAX global header, one block
	// of records, then the two blocks of the end-of-archive marker.
	last := headers[names[len(names)-1]]
	names = names[:len(names)-1]
	sum := crc32.Checksum(data[:len(data)-4*blockSize], crc32.MakeTable(crc32.Castagnoli))
	if want := map[string]string{trailerKey: fmt.Sprintf("%08x", sum)}; last.Typeflag != tar.TypeXGlobalHeader || !maps.Equal(last.PAXRecords, want) {
		t.Errorf("last entry %q %q %q, want a global header with %q", last.Name, last.Typeflag, last.PAXRecords, want)
	}
	for i := 1; i < len(names); i++ {
		if !strings.HasPrefix(names[i], "0/") {
			t.Errorf("entry %q is not under 0/", names[i])
		}
	}
	checks := []struct {
		name string
		typ  byte
		link string
		mode int64
	}{
		{"0/a/", tar.TypeDir, "", 0o755},
		{"0/a/b/", tar.TypeDir, "", 0o750},
		{"0/rodir/", tar.TypeDir, "", 0o555},
		{"0/setuid", tar.TypeReg, "", 0o755},
		{"0/a/hard2", tar.TypeReg, "", 0o640},
		{"0/hard1", tar.TypeLink, "0/a/hard2", 0o640},
		{"0/link-abs", tar.TypeSymlink, "/nonexistent/s3-cache-test/target", -1},
		{"0/a/b/up", tar.TypeSymlink, "../..", -1},
	}
	for _, c := range checks {
		hdr, ok := headers[c.name]
		if !ok {
			t.Errorf("no entry %q", c.name)
			continue
		}
		if hdr.Typeflag != c.typ || hdr.Linkname != c.link || (c.mode >= 0 && hdr.Mode != c.mode) {
			t.Errorf("%s: type %q link %q mode %o; want %q %q %o", c.name, hdr.Typeflag, hdr.Linkname, hdr.Mode, c.typ, c.link, c.mode)
		}
	}
	if _, ok := headers["0/fifo"]; ok {
		t.Error("the fifo was archived")
	}
	if got := headers["0/exec.sh"].ModTime; !got.Equal(time.Unix(1_600_000_001, 123_456_789)) {
		t.Errorf("exec.sh mtime %v: nanoseconds lost", got)
	}
}

// TestWriteDeterministic: the same tree gives the same bytes.
func TestWriteDeterministic(t *testing.T) {
	src := filepath.Join(tempDir(t), "src")
	makeSampleTree(t, src)
	for _, c := range allCompressions {
		a, _ := mustWrite(t, []string{src}, c, 0, nil)
		b, _ := mustWrite(t, []string{src}, c, 0, nil)
		if !bytes.Equal(a, b) {
			t.Errorf("%s: two archives of the same tree differ", c)
		}
	}
}

// TestSymlinkSource: a source that is a symlink is stored and restored as
// that symlink, never followed, also when spelled with a trailing slash (which
// a path lookup would follow): Extract restores to the cleaned path, so Write
// stores what stands there.
func TestSymlinkSource(t *testing.T) {
	for _, suffix := range []string{"", "/"} {
		tmp := tempDir(t)
		writeFile(t, filepath.Join(tmp, "real/file"), "x", 0o644, time.Now())
		link := filepath.Join(tmp, "link")
		mustSymlink(t, "real", link)
		var ww warnings
		data, st := mustWrite(t, []string{link + suffix}, Zstd, 0, &ww)
		if st.Entries != 1 || !ww.contains("symlink") {
			t.Errorf("%q: stats %+v, warnings %q", link+suffix, st, ww.msgs)
		}
		target := filepath.Join(tmp, "restored")
		if _, err := Extract(context.Background(), bytes.NewReader(data), []string{target}, Zstd, nil); err != nil {
			t.Fatal(err)
		}
		if got, err := os.Readlink(target); err != nil || got != "real" {
			t.Errorf("%q: restored %q, %v; want a symlink to real", link+suffix, got, err)
		}
	}
}

// TestImplicitParents: an archive without directory entries (not made by
// Write) is accepted; missing parents become 0o755 directories, and a later
// directory entry gives them their recorded mode.
func TestImplicitParents(t *testing.T) {
	raw := rawTar(t, []tarEntry{
		{name: "0/a/b/file", typ: tar.TypeReg, body: "x"},
		{name: "0/a/", typ: tar.TypeDir, mode: 0o700},
	})
	target := filepath.Join(tempDir(t), "t")
	if _, err := Extract(context.Background(), bytes.NewReader(raw), []string{target}, None, nil); err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]os.FileMode{".": 0o755, "a": 0o700, "a/b": 0o755} {
		info, err := os.Stat(filepath.Join(target, rel))
		if err != nil {
			t.Fatal(err)
		}
		if !info.IsDir() || info.Mode().Perm() != want {
			t.Errorf("%s: %v, want a directory %v", rel, info.Mode(), want)
		}
	}
}

// TestEmptyArchive: an archive with no entries (every source missing, or
// empty: not the working directory) changes nothing.
func TestEmptyArchive(t *testing.T) {
	parent, target := newTargetParent(t)
	t.Chdir(parent)
	before := snapshot(t, parent)
	for _, c := range allCompressions {
		data, st := mustWrite(t, []string{filepath.Join(parent, "missing"), ""}, c, 0, nil)
		if st != (Stats{}) {
			t.Errorf("stats %+v", st)
		}
		if _, err := Extract(context.Background(), bytes.NewReader(data), []string{target}, c, nil); err != nil {
			t.Fatalf("%s: %v", c, err)
		}
	}
	if after := snapshot(t, parent); after != before {
		t.Errorf("changed:\n%s\nwant:\n%s", after, before)
	}
}

// TestTargetIsReplacedNotFollowed: a target that is a symlink is replaced by
// the restored content; what it pointed to is untouched.
func TestTargetIsReplacedNotFollowed(t *testing.T) {
	tmp := tempDir(t)
	src := filepath.Join(tmp, "src")
	writeFile(t, filepath.Join(src, "f"), "new", 0o644, time.Now())
	data, _ := mustWrite(t, []string{src}, Gzip, 0, nil)
	elsewhere := filepath.Join(tmp, "elsewhere")
	writeFile(t, filepath.Join(elsewhere, "f"), "old", 0o644, time.Now())
	before := snapshot(t, elsewhere)
	target := filepath.Join(tmp, "target")
	mustSymlink(t, elsewhere, target)
	if _, err := Extract(context.Background(), bytes.NewReader(data), []string{target}, Gzip, nil); err != nil {
		t.Fatal(err)
	}
	assertSameTree(t, src, target)
	if after := snapshot(t, elsewhere); after != before {
		t.Errorf("symlink target changed:\n%s", after)
	}
	assertNoLeftovers(t, tmp)
}

func TestExtractRefusesBadTargets(t *testing.T) {
	tmp := tempDir(t)
	data, _ := mustWrite(t, nil, None, 0, nil)
	for _, targets := range [][]string{
		{""},
		{"/"},
		{filepath.Join(tmp, "a"), filepath.Join(tmp, "a")},
		{filepath.Join(tmp, "a"), filepath.Join(tmp, "a", "b")},
	} {
		if _, err := Extract(context.Background(), bytes.NewReader(data), targets, None, nil); err == nil {
			t.Errorf("targets %q accepted", targets)
		}
	}
}

func TestWriteErrors(t *testing.T) {
	src := tempDir(t)
	writeFile(t, filepath.Join(src, "f"), "x", 0o644, time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Write(ctx, io.Discard, []string{src}, Zstd, 0, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Write: %v", err)
	}
	if _, err := Write(context.Background(), io.Discard, []string{src}, "lz4", 0, nil); err == nil {
		t.Error("unknown compression accepted")
	}
	if _, err := Write(context.Background(), io.Discard, []string{src}, Gzip, 42, nil); err == nil {
		t.Error("gzip level 42 accepted")
	}
	failing := writerFunc(func([]byte) (int, error) { return 0, errors.New("disk on fire") })
	if _, err := Write(context.Background(), failing, []string{src}, None, 0, nil); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("failing writer: %v", err)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestCompression(t *testing.T) {
	cases := []struct {
		in      string
		want    Compression
		ext     string
		wantErr bool
	}{
		{"zstd", Zstd, ".tar.zst", false},
		{"gzip", Gzip, ".tar.gz", false},
		{"tgz", Gzip, ".tar.gz", false},
		{"none", None, ".tar", false},
		{"", "", "", true},
		{"ZSTD", "", "", true},
		{"lz4", "", "", true},
	}
	for _, c := range cases {
		got, err := ParseCompression(c.in)
		if (err != nil) != c.wantErr || got != c.want {
			t.Errorf("ParseCompression(%q) = %q, %v", c.in, got, err)
			continue
		}
		if err != nil {
			if !strings.Contains(err.Error(), "zstd, gzip") {
				t.Errorf("error %q does not name the allowed values", err)
			}
			continue
		}
		if got.Extension() != c.ext {
			t.Errorf("%s.Extension() = %q, want %q", got, got.Extension(), c.ext)
		}
	}
}

// TestHardLinkAcrossSources: Extract only accepts hard links within one
// target, so a file linked into two sources is stored twice, in full.
func TestHardLinkAcrossSources(t *testing.T) {
	tmp := tempDir(t)
	one, two := filepath.Join(tmp, "one"), filepath.Join(tmp, "two")
	writeFile(t, filepath.Join(one, "f"), "shared", 0o644, time.Now())
	if err := os.Mkdir(two, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(one, "f"), filepath.Join(two, "f")); err != nil {
		t.Fatal(err)
	}
	data, st := mustWrite(t, []string{one, two}, Zstd, 0, nil)
	if st.Bytes != 2*int64(len("shared")) {
		t.Errorf("stats %+v: the second source should hold a full copy", st)
	}
	restore := filepath.Join(tmp, "restore")
	targets := []string{filepath.Join(restore, "one"), filepath.Join(restore, "two")}
	if _, err := Extract(context.Background(), bytes.NewReader(data), targets, Zstd, nil); err != nil {
		t.Fatal(err)
	}
	assertSameTree(t, one, targets[0])
	assertSameTree(t, two, targets[1])
}
