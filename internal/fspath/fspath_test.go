package fspath

import "testing"

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
