//go:build unix

package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// oddNames are file names a unix tree may hold (relative, slash-separated):
// any bytes but "/" and NUL, up to 255 bytes per component.
func oddNames() []string {
	names := []string{
		"caf\xe9.txt",                // Latin-1 from an old zip: not UTF-8
		"\xff\xfe dir/inner\x80.txt", // a directory with such a name, and a file in it
		`a\b`,                        // a backslash is an ordinary character here
		`..\..\escape`,               // and so this is one name, not a path
		`back\slash dir/x`,           //
		"new\nline",                  //
		"tab\tand\rcr",               //
		"sp ace ",                    //
		"-dash", "*star?", "colon:name", "ünïcödé ✓",
		strings.Repeat("n", 255), // NAME_MAX
		strings.Repeat("d", 200) + "/" + strings.Repeat("e", 250) + "/" + strings.Repeat("f", 255),
		strings.Repeat("u", 98),     // entry name "0/uuu…" of exactly 100 bytes (the USTAR name field)
		strings.Repeat("v", 99),     // 101 bytes
		strings.Repeat("\xe9", 253), // long and not UTF-8
	}
	if runtime.GOOS == "darwin" { // macOS filesystems require UTF-8 names
		names = slices.DeleteFunc(names, func(n string) bool { return !utf8.ValidString(n) })
	}
	return names
}

// makeOddTree creates a tree holding every odd name, plus a symlink and a
// hard link whose names and targets are odd too.
func makeOddTree(t *testing.T, dir string) {
	t.Helper()
	mtime := time.Unix(1_600_000_000, 42)
	for i, name := range oddNames() {
		writeFile(t, filepath.Join(dir, name), fmt.Sprintf("file %d: %q", i, name), 0o644, mtime)
	}
	first := oddNames()[0]
	mustSymlink(t, first, filepath.Join(dir, "link "+first))
	if err := os.Link(filepath.Join(dir, first), filepath.Join(dir, "zz hard "+first)); err != nil {
		t.Fatal(err)
	}
}

// TestOddNamesRoundTrip: every name a unix tree can hold is saved and
// restored byte for byte, with no warning (a saved key always restores).
func TestOddNamesRoundTrip(t *testing.T) {
	src := filepath.Join(tempDir(t), "src")
	makeOddTree(t, src)
	for _, c := range allCompressions {
		t.Run(string(c), func(t *testing.T) {
			var ww, ew warnings
			data, _ := mustWrite(t, []string{src}, c, 0, &ww)
			parent, target := newTargetParent(t)
			if _, err := Extract(context.Background(), bytes.NewReader(data), []string{target}, c, &ew); err != nil {
				t.Fatalf("Extract: %v", err)
			}
			assertSameTree(t, src, target)
			if len(ww.msgs)+len(ew.msgs) != 0 {
				t.Errorf("warnings: Write %q, Extract %q", ww.msgs, ew.msgs)
			}
			assertNoLeftovers(t, parent)
		})
	}
}

// TestTarToolReadsArchives: an archive (with compression none) is a plain
// tar that the system's tar extracts silently, odd names and checksum
// trailer included.
func TestTarToolReadsArchives(t *testing.T) {
	tarTool, err := exec.LookPath("tar")
	if err != nil {
		t.Fatalf("this test needs a tar command (GNU tar or bsdtar) on PATH: %v", err)
	}
	tmp := tempDir(t)
	src := filepath.Join(tmp, "src")
	makeOddTree(t, src)
	data, _ := mustWrite(t, []string{src}, None, 0, nil)
	archive := filepath.Join(tmp, "a.tar")
	if err := os.WriteFile(archive, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tarTool, "-xf", archive, "-C", out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil || stderr.Len() != 0 {
		t.Fatalf("%s -x: %v\n%s", tarTool, err, stderr.String())
	}
	if entries, _ := os.ReadDir(out); len(entries) != 1 || entries[0].Name() != "0" {
		t.Errorf("tar created %v, want only 0 (the trailer is metadata, not a file)", entries)
	}
	assertSameTree(t, src, filepath.Join(out, "0"))
}

// TestUnrepresentableNamesAreSkipped: an entry whose name this system cannot
// hold (here, a component longer than NAME_MAX) is skipped with one warning
// naming it, escaped; so is everything below such a directory, silently, and
// a hard link to a skipped file. The rest of the archive is restored.
func TestUnrepresentableNamesAreSkipped(t *testing.T) {
	long := func(c string) string { return strings.Repeat(c, 256) }
	bad := "new\nline\xff" + long("w") // escaped in the warning
	entries := []tarEntry{
		{name: "0/", typ: tar.TypeDir, mode: 0o755},
		{name: "0/ok", typ: tar.TypeReg, body: "ok"},
		{name: "0/" + long("x"), typ: tar.TypeReg, body: "too long"},
		{name: "0/" + long("y") + "/", typ: tar.TypeDir, mode: 0o755},
		{name: "0/" + long("y") + "/a", typ: tar.TypeReg, body: "below"},
		{name: "0/" + long("y") + "/b/c", typ: tar.TypeReg, body: "below"},
		{name: "0/d/" + long("z") + "/e", typ: tar.TypeReg, body: "below, no directory entry"},
		{name: "0/d/" + long("z") + "/f", typ: tar.TypeReg, body: "below, no directory entry"},
		{name: "0/d/" + long("z") + "/", typ: tar.TypeDir, mode: 0o755},
		{name: "0/hard", typ: tar.TypeLink, link: "0/" + long("x")},
		{name: "0/" + bad, typ: tar.TypeSymlink, link: "ok"},
		{name: "0/after", typ: tar.TypeReg, body: "after"},
		// Skipped, so its content is not read: the trailer that follows
		// must still match.
		{name: "0/" + long("q"), typ: tar.TypeReg, body: "last, skipped"},
	}
	for _, c := range allCompressions {
		t.Run(string(c), func(t *testing.T) {
			parent, target := newTargetParent(t)
			var w warnings
			st, err := Extract(context.Background(), bytes.NewReader(compress(t, c, rawTar(t, entries))), []string{target}, c, &w)
			if err != nil {
				t.Fatalf("Extract: %v", err)
			}
			want := filepath.Join(tempDir(t), "want")
			writeFile(t, filepath.Join(want, "ok"), "ok", 0o644, time.Unix(1_600_000_000, 0))
			writeFile(t, filepath.Join(want, "after"), "after", 0o644, time.Unix(1_600_000_000, 0))
			// Not even "d", the missing parent of skipped entries, is created.
			if err := os.Chmod(want, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(want, time.Unix(1_600_000_000, 0), time.Unix(1_600_000_000, 0)); err != nil {
				t.Fatal(err)
			}
			assertSameTree(t, want, target)
			if st.Entries != 3 || st.Bytes != int64(len("ok")+len("after")) {
				t.Errorf("stats %+v, want the 3 restored entries", st)
			}
			wantWarnings := []string{
				fmt.Sprintf("skipping %q: ", "0/"+long("x")),
				fmt.Sprintf("skipping %q: ", "0/"+long("y")),
				fmt.Sprintf("skipping %q and everything below it: ", "0/d/"+long("z")),
				fmt.Sprintf("skipping %q: it is a hard link to %q", "0/hard", "0/"+long("x")),
				fmt.Sprintf("skipping %q: ", "0/"+bad),
				fmt.Sprintf("skipping %q: ", "0/"+long("q")),
			}
			if len(w.msgs) != len(wantWarnings) {
				t.Errorf("%d warnings, want %d: %q", len(w.msgs), len(wantWarnings), w.msgs)
			}
			for _, ww := range wantWarnings {
				if !w.contains(ww) {
					t.Errorf("no warning %q in %q", ww, w.msgs)
				}
			}
			for _, m := range w.msgs {
				if strings.Contains(m, "\n") || !utf8.ValidString(m) {
					t.Errorf("warning not escaped: %q", m)
				}
			}
			assertNoLeftovers(t, parent)
		})
	}
}
