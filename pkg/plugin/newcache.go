package plugin

// Why a file: how an invocation gets the cache it restores and saves, and the paths it refuses.

import (
	"context"
	"io"
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
// Its store is set up in the background (pendingStore) unless ready: a restore takes its locks
// and starts walking its paths meanwhile; a save, which reads every path before it needs the
// store, wants a configuration error before it begins.
func (inv *Invocation) openCache(ctx context.Context, ready bool) (hookCache, error) {
	if inv.newCache != nil {
		return inv.newCache(ctx)
	}
	c, store, err := inv.buildCache(ctx)
	if err != nil {
		return nil, err
	}
	if ready {
		if _, err := store.wait(ctx); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// buildCache builds the cache the configuration describes: the store as configured (being set
// up), logging to the job's log, and the cache of the resolved paths.
func (inv *Invocation) buildCache(ctx context.Context) (*cache.Cache, *pendingStore, error) {
	paths, err := inv.cachePaths()
	if err != nil {
		return nil, nil, err
	}
	o := inv.Config.Store
	o.Log = inv.Log
	store := startStore(ctx, o)
	c := cache.New(store, inv.Log, paths, inv.cacheOptions())
	inv.usage = &usage{ctx: ctx, store: store, prefix: inv.Config.Prefix, log: inv.Log, now: time.Now,
		scope: o.Endpoint + "\x00" + o.Bucket, dir: stateDir()}
	c.Used = inv.usage.used
	return c, store, nil
}

// pendingStore is the store s3.New is setting up in another goroutine: loading the SDK's
// configuration takes tens of milliseconds of CPU (a CA bundle to parse, when AWS_CA_BUNDLE
// names one) and may ask the bucket for its region. Each method waits for it, and fails with
// its error.
type pendingStore struct {
	done  chan struct{} // closed once store or err is set
	store *s3.Store
	err   error
}

func startStore(ctx context.Context, o s3.Options) *pendingStore {
	p := &pendingStore{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.store, p.err = s3.New(ctx, o)
	}()
	return p
}

func (p *pendingStore) wait(ctx context.Context) (*s3.Store, error) {
	select {
	case <-p.done:
		return p.store, p.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *pendingStore) Head(ctx context.Context, key string) (s3.Object, error) {
	s, err := p.wait(ctx)
	if err != nil {
		return s3.Object{}, err
	}
	return s.Head(ctx, key)
}

func (p *pendingStore) Open(ctx context.Context, obj s3.Object) io.ReadCloser {
	s, err := p.wait(ctx)
	if err != nil {
		return failedBody{err}
	}
	return s.Open(ctx, obj)
}

// failedBody is the body of an object that could not be opened.
type failedBody struct{ err error }

func (b failedBody) Read([]byte) (int, error) { return 0, b.err }
func (b failedBody) Close() error             { return nil }

func (p *pendingStore) UploadEach(ctx context.Context, keys []string, r io.Reader, o s3.PutOptions) ([]s3.Result, []error) {
	s, err := p.wait(ctx)
	if err != nil {
		errs := make([]error, len(keys))
		for i := range errs {
			errs[i] = err
		}
		return make([]s3.Result, len(keys)), errs
	}
	return s.UploadEach(ctx, keys, r, o)
}

func (p *pendingStore) Newest(ctx context.Context, prefix string) (s3.Listed, error) {
	s, err := p.wait(ctx)
	if err != nil {
		return s3.Listed{}, err
	}
	return s.Newest(ctx, prefix)
}

func (p *pendingStore) Mark(ctx context.Context, key string) error {
	s, err := p.wait(ctx)
	if err != nil {
		return err
	}
	return s.Mark(ctx, key)
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
