package fspath

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestWithin(t *testing.T) {
	for _, tc := range []struct {
		root, p string
		want    bool
	}{
		{"/a", "/a", true},
		{"/a", "/a/b", true},
		{"/a/", "/a/b/../c", true},
		{"/", "/", true},
		{"/", "/etc", true},
		{"/a", "/ab", false},
		{"/a/b", "/a", false},
		{"/a", "/a/../b", false},
		{"/a", "/a/..b", true}, // a name starting with two dots is an ordinary name
		{"a", "a/b", true},
		{"/a", "a", false},
	} {
		if got := Within(tc.root, tc.p); got != tc.want {
			t.Errorf("Within(%q, %q) = %v, want %v", tc.root, tc.p, got, tc.want)
		}
		if want := tc.want || Within(tc.p, tc.root); Overlap(tc.root, tc.p) != want || Overlap(tc.p, tc.root) != want {
			t.Errorf("Overlap(%q, %q) is not %v both ways", tc.root, tc.p, want)
		}
	}
}

func TestForms(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	real, link := filepath.Join(dir, "real"), filepath.Join(dir, "link")
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		p    string
		want []string
	}{
		{real + "/", []string{real}},
		{link, []string{link, real}},
		{link + "/", []string{link, real}},
		{filepath.Join(dir, "missing"), []string{filepath.Join(dir, "missing")}},
		{filepath.Join(link, "missing", "deeper"), []string{filepath.Join(link, "missing", "deeper"), filepath.Join(real, "missing", "deeper")}},
	} {
		if got := Forms(tc.p); !slices.Equal(got, tc.want) {
			t.Errorf("Forms(%q) = %q, want %q", tc.p, got, tc.want)
		}
	}
}

// Two paths that reach one directory through a symlink overlap, also before they exist.
func TestOverlapAnyForm(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	if err := os.Mkdir(a, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(a, b); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		x, y string
		want bool
	}{
		{a, filepath.Join(b, "c"), true},
		{filepath.Join(b, "c"), filepath.Join(a, "c"), true},
		{filepath.Join(a, "c"), filepath.Join(b, "d"), false},
		{a, filepath.Join(dir, "ab"), false},
	} {
		if got := OverlapAnyForm(tc.x, tc.y); got != tc.want {
			t.Errorf("OverlapAnyForm(%q, %q) = %v, want %v", tc.x, tc.y, got, tc.want)
		}
	}
}
