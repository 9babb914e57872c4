package cache_test

import (
	"slices"
	"testing"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cache"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
)

// TestNewCleansPaths: a path spelled with a trailing slash or a dot segment names the same
// tree as its clean form, for the walk of a warm restore as for the archive.
func TestNewCleansPaths(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"/w/node_modules/"}, []string{"/w/node_modules"}},
		{[]string{"/w/./a//b/", "/w/c/.."}, []string{"/w/a/b", "/w"}},
		{[]string{"/w/clean"}, []string{"/w/clean"}},
		{[]string{"", "/w/x/"}, []string{"", "/w/x"}}, // not ".", the working directory
	} {
		in := slices.Clone(tc.in)
		c := cache.New(nil, nil, in, config.CacheOptions{})
		if !slices.Equal(c.Paths, tc.want) {
			t.Errorf("New(%q).Paths = %q, want %q", tc.in, c.Paths, tc.want)
		}
		if !slices.Equal(in, tc.in) {
			t.Errorf("New changed its argument: %q, was %q", in, tc.in)
		}
	}
}
