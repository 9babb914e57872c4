package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHostileArchives: every hostile archive is refused as a whole with
// ErrUnsafe; the target, its neighbours and the directory hostile entries aim
// at are left byte for byte as they were, and no staging directory remains.
func TestHostileArchives(t *testing.T) {
	for _, c := range allCompressions {
		for _, tc := range hostileCases() {
			t.Run(fmt.Sprintf("%s/%s", c, tc.name), func(t *testing.T) {
				parent, target := newTargetParent(t)
				outside := filepath.Join(parent, "outside")
				if err := os.Mkdir(filepath.Join(outside, "file"), 0o755); err != nil { // for "0/s/file"
					t.Fatal(err)
				}
				entries := make([]tarEntry, len(tc.entries))
				for i, e := range tc.entries {
					e.name = replaceOutside(e.name, outside)
					e.link = replaceOutside(e.link, outside)
					entries[i] = e
				}
				targets := []string{target}
				if tc.targets == 2 {
					targets = append(targets, filepath.Join(parent, "second"))
				}
				before := snapshot(t, parent)

				data := compress(t, c, rawTar(t, entries))
				_, err := Extract(context.Background(), bytes.NewReader(data), targets, c, nil)
				if !errors.Is(err, ErrUnsafe) {
					t.Fatalf("err = %v, want ErrUnsafe", err)
				}
				if errors.Is(err, ErrCorrupt) {
					t.Errorf("err %v is also ErrCorrupt", err)
				}
				if after := snapshot(t, parent); after != before {
					t.Errorf("directory changed:\n%s\nwant:\n%s", after, before)
				}
				assertNoLeftovers(t, parent)
			})
		}
	}
}

// hostileCase is a hostile archive. Its entries may use the placeholder
// "OUTSIDE" for the absolute path of a directory next to the target.
type hostileCase struct {
	name    string
	targets int
	entries []tarEntry
}

// hostileCases are archives Extract must refuse as a whole.
func hostileCases() []hostileCase {
	reg := func(name string) tarEntry { return tarEntry{name: name, typ: tar.TypeReg, body: "pwned"} }
	dir := func(name string) tarEntry { return tarEntry{name: name, typ: tar.TypeDir, mode: 0o755} }
	symlink := func(name, to string) tarEntry { return tarEntry{name: name, typ: tar.TypeSymlink, link: to} }
	hardlink := func(name, to string) tarEntry { return tarEntry{name: name, typ: tar.TypeLink, link: to} }

	var manyValid []tarEntry
	manyValid = append(manyValid, dir("0/"))
	for i := range 300 {
		manyValid = append(manyValid, reg(fmt.Sprintf("0/file%03d", i)))
	}

	return []hostileCase{
		{"dotdot", 1, []tarEntry{reg("../escape")}},
		{"index dotdot", 1, []tarEntry{dir("0/"), reg("0/../../escape")}},
		{"inner dotdot", 1, []tarEntry{dir("0/"), dir("0/a/"), reg("0/a/../../b")}},
		{"absolute", 1, []tarEntry{reg("OUTSIDE/abs")}},
		{"absolute root-like", 1, []tarEntry{reg("/0/x")}},
		{"windows volume", 1, []tarEntry{reg("C:/x")}},
		{"index out of range", 1, []tarEntry{reg("5/x")}},
		{"index leading zero", 1, []tarEntry{reg("01/x")}},
		{"index plus sign", 1, []tarEntry{reg("+0/x")}},
		{"index negative", 1, []tarEntry{reg("-1/x")}},
		{"not an index", 1, []tarEntry{reg("x")}},
		{"dot component", 1, []tarEntry{dir("0/"), reg("0/./a")}},
		{"double slash", 1, []tarEntry{dir("0/"), reg("0//a")}},
		{"leading dot slash", 1, []tarEntry{reg("./0/a")}},
		{"write through symlink", 1, []tarEntry{dir("0/"), symlink("0/link", "OUTSIDE"), reg("0/link/pwned")}},
		{"write through symlink dir entry", 1, []tarEntry{dir("0/"), symlink("0/link", "OUTSIDE"), dir("0/link/d/")}},
		{"write through deeper symlink", 1, []tarEntry{dir("0/"), symlink("0/link", "OUTSIDE"), reg("0/link/a/b/pwned")}},
		{"symlink to dotdot", 1, []tarEntry{dir("0/"), symlink("0/l", ".."), reg("0/l/x")}},
		{"symlink root", 1, []tarEntry{symlink("0", "OUTSIDE"), reg("0/pwned")}},
		{"symlink replaces implicit dir", 1, []tarEntry{reg("0/a/b"), symlink("0/a", "OUTSIDE"), reg("0/a/c")}},
		{"duplicate file", 1, []tarEntry{dir("0/"), reg("0/f"), reg("0/f")}},
		{"duplicate dir", 1, []tarEntry{dir("0/"), dir("0/d/"), dir("0/d/")}},
		{"file then dir", 1, []tarEntry{dir("0/"), reg("0/f"), dir("0/f/")}},
		{"file under file", 1, []tarEntry{dir("0/"), reg("0/f"), reg("0/f/x")}},
		{"file under root file", 1, []tarEntry{reg("0"), reg("0/x")}},
		{"hard link dotdot", 1, []tarEntry{dir("0/"), hardlink("0/h", "../../etc/passwd")}},
		{"hard link absolute", 1, []tarEntry{dir("0/"), hardlink("0/h", "/etc/passwd")}},
		{"hard link other index", 2, []tarEntry{dir("0/"), reg("0/file"), dir("1/"), hardlink("1/h", "0/file")}},
		{"hard link to symlink", 1, []tarEntry{dir("0/"), symlink("0/s", "OUTSIDE"), hardlink("0/h", "0/s")}},
		{"hard link to dir", 1, []tarEntry{dir("0/"), dir("0/d/"), hardlink("0/h", "0/d")}},
		{"hard link forward", 1, []tarEntry{dir("0/"), hardlink("0/h", "0/later"), reg("0/later")}},
		{"hard link through symlink", 1, []tarEntry{dir("0/"), symlink("0/s", "OUTSIDE"), hardlink("0/h", "0/s/file")}},
		{"unknown type", 1, []tarEntry{dir("0/"), {name: "0/x", typ: 'Z'}}},
		{"hostile after many valid", 1, append(manyValid[:len(manyValid):len(manyValid)], reg("../escape"))},
		{"dotdot after many valid", 1, append(manyValid[:len(manyValid):len(manyValid)], reg("0/../../escape"))},
		{"file under unrepresentable file", 1, []tarEntry{dir("0/"), reg("0/" + strings.Repeat("x", 256)), reg("0/" + strings.Repeat("x", 256) + "/y")}},
		{"hard link to unrepresentable dir", 1, []tarEntry{dir("0/"), dir("0/" + strings.Repeat("x", 256) + "/"), hardlink("0/h", "0/"+strings.Repeat("x", 256))}},
	}
}

func replaceOutside(s, outside string) string {
	if len(s) >= len("OUTSIDE") && s[:len("OUTSIDE")] == "OUTSIDE" {
		return outside + s[len("OUTSIDE"):]
	}
	return s
}

// TestAcceptedOddities: things a hostile-archive filter must not reject,
// because real caches contain them.
func TestAcceptedOddities(t *testing.T) {
	entries := []tarEntry{
		{name: "0/", typ: tar.TypeDir, mode: 0o755},
		{name: "0/abs", typ: tar.TypeSymlink, link: "/usr/bin/python3"},
		{name: "0/up", typ: tar.TypeSymlink, link: "../../lib"},
		{name: "0/dev", typ: tar.TypeChar},                    // skipped with a warning
		{name: "0/pipe", typ: tar.TypeFifo},                   // skipped with a warning
		{name: "0/dir", typ: tar.TypeDir, mode: 0o755},        // no trailing slash is fine
		{name: "0/dir/f", typ: tar.TypeReg, body: "f"},        //
		{name: "0/dir/h", typ: tar.TypeLink, link: "0/dir/f"}, //
		{name: "pax_global_header", typ: tar.TypeXGlobalHeader},
	}
	target := filepath.Join(tempDir(t), "t")
	var w warnings
	st, err := Extract(context.Background(), bytes.NewReader(rawTar(t, entries)), []string{target}, None, &w)
	if err != nil {
		t.Fatal(err)
	}
	if st.Entries != 6 || st.Bytes != 1 {
		t.Errorf("stats %+v", st)
	}
	if !w.contains("0/dev") || !w.contains("0/pipe") {
		t.Errorf("warnings %q", w.msgs)
	}
	for name, want := range map[string]string{"abs": "/usr/bin/python3", "up": "../../lib"} {
		if got, err := os.Readlink(filepath.Join(target, name)); err != nil || got != want {
			t.Errorf("%s -> %q (%v), want %q", name, got, err, want)
		}
	}
	if _, err := os.Lstat(filepath.Join(target, "dev")); !os.IsNotExist(err) {
		t.Errorf("device entry created: %v", err)
	}
}

// TestCheckName covers entry-name validation directly.
func TestCheckName(t *testing.T) {
	cases := []struct {
		raw   string
		isDir bool
		index int
		rel   string
		ok    bool
	}{
		{"0", false, 0, "", true},
		{"0/", true, 0, "", true},
		{"0", true, 0, "", true},
		{"2/a/b.txt", false, 2, "a/b.txt", true},
		{"10/x", false, 10, "x", true},
		{"0/a/", true, 0, "a", true},
		{"0/.hidden", false, 0, ".hidden", true},
		{"0/..dots", false, 0, "..dots", true},
		{"0/a:b", false, 0, "a:b", true},
		{"0/a\\b", false, 0, "a\\b", true},
		{"0/caf\xe9/new\nline", false, 0, "caf\xe9/new\nline", true},
		{"0/..\\..\\x", false, 0, "..\\..\\x", true},
		{"", false, 0, "", false},
		{"/", true, 0, "", false},
		{"0/", false, 0, "", false},
		{"0//", true, 0, "", false},
		{"00", false, 0, "", false},
		{"11/x", false, 0, "", false},
		{"0/a/..", false, 0, "", false},
		{"..", false, 0, "", false},
		{"0/.", false, 0, "", false},
		{"0/a\x00b", false, 0, "", false},
		{"C:", false, 0, "", false},
		{" 0/x", false, 0, "", false},
	}
	for _, c := range cases {
		e, reason := checkName(c.raw, c.isDir, 11)
		if ok := reason == ""; ok != c.ok {
			t.Errorf("checkName(%q, %v): reason %q, want ok=%v", c.raw, c.isDir, reason, c.ok)
			continue
		}
		if c.ok && (e.index != c.index || e.rel != c.rel) {
			t.Errorf("checkName(%q) = %+v, want index %d rel %q", c.raw, e, c.index, c.rel)
		}
	}
}
