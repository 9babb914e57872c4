package cache_test

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cache"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cachekey"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/s3"
)

// openStore calls open as each download begins.
type openStore struct {
	cache.Store
	open func(obj s3.Object)
}

func (s *openStore) Open(ctx context.Context, obj s3.Object) io.ReadCloser {
	s.open(obj)
	return s.Store.Open(ctx, obj)
}

// slowWalkEnd makes the warm walk of c end 300 ms after its digest, and returns whether it
// has ended.
func slowWalkEnd(c *cache.Cache) *atomic.Bool {
	var ended atomic.Bool
	cache.OnWarmWalk(c, func() {
		time.Sleep(300 * time.Millisecond)
		ended.Store(true)
	})
	return &ended
}

// The walk started for a warm restore has ended before a download may change the paths, and
// before Restore returns, whatever it returns.
func TestWarmWalkEndsBeforeADownloadAndBeforeRestoreReturns(t *testing.T) {
	srv, h := startWarm(t)
	elsewhere := filepath.Join(t.TempDir(), "node_modules")
	makeTree(t, elsewhere, 32<<10)
	saver, _, _ := newCache(t, srv, []string{elsewhere}, 2)
	other := key("walk/other.tar.zst")
	_, err := saveOne(t, saver, other)
	must(t, err)

	dir := filepath.Join(t.TempDir(), "node_modules")
	makeTree(t, dir, 64<<10)
	age()
	c, log := h.cache(dir)
	k := key("walk/stamped.tar.zst")
	if s, err := saveOne(t, c, k); err != nil || !s.Stored {
		t.Fatalf("save: %+v, %v\n%s", s, err, log)
	}
	store := c.Store

	// A failing lookup: Restore returns an error, after the walk.
	ended := slowWalkEnd(c)
	boom := errors.New("boom")
	c.Store = &headStore{Store: store, head: func(context.Context, string) (s3.Object, error) { return s3.Object{}, boom }}
	if _, err := c.Restore(t.Context(), []cachekey.Key{k}); !errors.Is(err, boom) {
		t.Fatalf("restore: %v, want boom", err)
	}
	if !ended.Load() {
		t.Error("Restore returned (error) while its warm walk still ran")
	}

	// A miss: the same.
	ended = slowWalkEnd(c)
	c.Store = &headStore{Store: store, head: func(context.Context, string) (s3.Object, error) { return s3.Object{}, s3.ErrNotFound }}
	if r, err := c.Restore(t.Context(), []cachekey.Key{k}); err != nil || r.Hit != cache.Miss {
		t.Fatalf("restore: %+v, %v, want a miss", r, err)
	}
	if !ended.Load() {
		t.Error("Restore returned (miss) while its warm walk still ran")
	}

	// An object the stamp does not name: the walk ends before its download begins.
	ended = slowWalkEnd(c)
	var duringWalk atomic.Bool
	opened := false
	c.Store = &openStore{Store: store, open: func(s3.Object) { opened = true; duringWalk.Store(!ended.Load()) }}
	r, err := c.Restore(t.Context(), []cachekey.Key{other, k})
	if err != nil || r.Warm || r.Key != other {
		t.Fatalf("restore: %+v, %v, want a real restore of %s\n%s", r, err, other.Name, log)
	}
	if !opened || duringWalk.Load() {
		t.Errorf("download opened %t, while the warm walk still ran %t", opened, duringWalk.Load())
	}
}
