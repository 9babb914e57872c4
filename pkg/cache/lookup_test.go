package cache_test

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/s3test"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/archive"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cache"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cachekey"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/s3"
)

// noDownloads is the real store, but a download fails the test.
type noDownloads struct {
	cache.Store
	t *testing.T
}

func (n noDownloads) Open(ctx context.Context, obj s3.Object) io.ReadCloser {
	n.t.Errorf("a lookup downloaded %s", obj.Key)
	return n.Store.Open(ctx, obj)
}

// Lookup answers as Restore would (exact, fallback, miss) with HEAD requests alone, while another
// job on the host holds the paths' lock (a lookup that waited for it would time out), and
// leaves the paths as they were.
func TestLookupDownloadsNothingAndTakesNoLock(t *testing.T) {
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		src := filepath.Join(t.TempDir(), "cache")
		makeTree(t, src, 1<<10)
		saver, store, _ := newCache(t, srv, []string{src}, 2)
		branch := cachekey.Key{Level: config.LevelBranch, Name: "lookup/branch.tar.zst"}
		_, err := saveOne(t, saver, branch)
		must(t, err)

		target := filepath.Join(t.TempDir(), "cache")
		fillTree(t, target)
		want := listing(t, target)
		held, err := archive.LockTargets(t.Context(), []string{target}, archive.LockOptions{Exclusive: true})
		must(t, err)
		defer held.Unlock()

		looker, _, log := newCache(t, srv, []string{target}, 2)
		looker.Store = noDownloads{Store: store, t: t}
		looker.Options.LockTimeout = 200 * time.Millisecond
		file := key("lookup/file.tar.zst")
		for _, tc := range []struct {
			candidates []cachekey.Key
			hit        cache.Hit
			key        cachekey.Key
		}{
			{[]cachekey.Key{branch}, cache.Exact, branch},
			{[]cachekey.Key{file, branch}, cache.Fallback, branch},
			{[]cachekey.Key{file}, cache.Miss, cachekey.Key{}},
		} {
			got, err := looker.Lookup(t.Context(), tc.candidates)
			must(t, err)
			if got.Hit != tc.hit || got.Key != tc.key || got.Size != 0 {
				t.Errorf("lookup of %v = %+v, want %s of %q and 0 bytes", tc.candidates, got, tc.hit, tc.key.Name)
			}
		}
		if strings.Contains(log.String(), "Waiting for another job") {
			t.Errorf("a lookup waited for the host lock:\n%s", log)
		}
		if !strings.Contains(log.String(), "Cache hit (fallback, branch level): found lookup/branch.tar.zst") {
			t.Errorf("log lacks the fallback hit:\n%s", log)
		}
		if got := listing(t, target); got != want {
			t.Errorf("a lookup changed the path:\n%s\nwant:\n%s", got, want)
		}
	})
}
