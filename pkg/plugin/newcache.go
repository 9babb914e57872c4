package plugin

// Why a file: how an invocation gets the cache it restores and saves, and the paths it refuses.

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cache"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cachekey"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/s3"
)

// hookCache is what the hooks do with a cache; *cache.Cache implements it, tests use a fake.
type hookCache interface {
	Restore(ctx context.Context, candidates []cachekey.Key) (cache.Restored, error)
	Lookup(ctx context.Context, candidates []cachekey.Key) (cache.Restored, error)
	Save(ctx context.Context, keys []cachekey.Key) ([]cache.Saved, error)
}

// cachePaths resolves the configured paths, refusing any a restore must not replace (see
// config.ResolvePaths): besides the checkout and $HOME, the working directory and the checkout
// as the agent names it, in case they differ; and the plugin's own files (checkBinaryCache).
// It is the one place that decides which paths are refused: Main calls it before any hook runs.
func (inv *Invocation) cachePaths() ([]string, error) {
	keep := []string{os.Getenv("BUILDKITE_BUILD_CHECKOUT_PATH")}
	if wd, err := os.Getwd(); err == nil {
		keep = append(keep, wd)
	}
	paths, err := config.ResolvePaths(inv.Config.Paths, inv.Job.Dir, inv.Job.Home, keep...)
	if err != nil {
		return nil, err
	}
	return paths, inv.checkBinaryCache()
}

// openCache returns the cache the hooks work with: the seam's, when set, or the configured one.
func (inv *Invocation) openCache(ctx context.Context) (hookCache, error) {
	if inv.newCache != nil {
		return inv.newCache(ctx)
	}
	c, err := inv.buildCache(ctx)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// buildCache builds the cache the configuration describes: the store as configured, logging to
// the job's log, and the cache of the resolved paths.
func (inv *Invocation) buildCache(ctx context.Context) (*cache.Cache, error) {
	paths, err := inv.cachePaths()
	if err != nil {
		return nil, err
	}
	o := inv.Config.Store
	o.Log = inv.Log
	store, err := s3.New(ctx, o)
	if err != nil {
		return nil, err
	}
	c := cache.New(store, inv.Log, paths, inv.cacheOptions())
	inv.usage = &usage{ctx: ctx, store: store, prefix: inv.Config.Prefix, log: inv.Log, now: time.Now,
		scope: o.Endpoint + "\x00" + o.Bucket, dir: stateDir()}
	c.Used = inv.usage.used
	return c, nil
}

// cacheOptions are the configured cache options, with the directory of the stamps of warm
// restores in this user's private state directory; none if that directory is not private.
func (inv *Invocation) cacheOptions() config.CacheOptions {
	o := inv.Config.Cache
	if privateDir(stateDir(), true) == nil {
		o.StampDir = filepath.Join(stateDir(), warmDir)
	}
	return o
}
