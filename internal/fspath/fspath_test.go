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
	} {
		if got := Forms(tc.p); !slices.Equal(got, tc.want) {
			t.Errorf("Forms(%q) = %q, want %q", tc.p, got, tc.want)
		}
	}
}
