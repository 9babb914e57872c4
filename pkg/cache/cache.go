package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/archive"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/buildkite"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cachekey"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/s3"
)

// Store is the object store as this package uses it; *s3.Store implements it.
type Store interface {
	Head(ctx context.Context, key string) (s3.Object, error)
	Open(ctx context.Context, obj s3.Object) io.ReadCloser
	Upload(ctx context.Context, key string, r io.Reader, o s3.PutOptions) (s3.Result, error)
}

// Cache is one cache as configured: what is archived and how.
type Cache struct {
	Store       Store
	Log         *buildkite.Log
	Paths       []string // absolute paths; archive entry i restores to Paths[i]
	Compression archive.Compression
	Level       int   // compression level, 0 for the default
	Restarts    int   // download-retries: whole-restore restarts
	MaxSize     int64 // 0: no limit
	Force       bool  // overwrite existing objects
	// ProgressEvery is the interval of progress lines on long transfers (0: 5s).
	ProgressEvery time.Duration
}

// Hit says how a restore went.
type Hit string

// The outcomes of a restore.
const (
	Exact    Hit = "exact"    // the first (narrowest) candidate
	Fallback Hit = "fallback" // a wider candidate
	Miss     Hit = "miss"
)

// Restored describes a finished restore.
type Restored struct {
	Hit      Hit
	Key      cachekey.Key // zero on a miss
	Size     int64        // archive bytes downloaded
	Stats    archive.Stats
	Restarts int
	Duration time.Duration
}

func (c *Cache) progressEvery() time.Duration {
	if c.ProgressEvery > 0 {
		return c.ProgressEvery
	}
	return 5 * time.Second
}

// Restore restores the first of candidates that exists (narrowest first).
func (c *Cache) Restore(ctx context.Context, candidates []cachekey.Key) (Restored, error) {
	for i, k := range candidates {
		c.Log.Group("Restoring cache (%s level)", k.Level)
		r, err := c.restoreKey(ctx, k)
		if errors.Is(err, errMissing) {
			if r.Restarts > 0 {
				c.Log.Infof("%s disappeared during the restore (expired?)", k.Name)
			} else {
				c.Log.Infof("No cache at %s", k.Name)
			}
			continue
		}
		if err != nil {
			return Restored{Hit: Miss}, fmt.Errorf("restore %s: %w", k.Name, err)
		}
		r.Hit = Fallback
		if i == 0 {
			r.Hit = Exact
		}
		c.Log.Infof("Cache hit (%s, %s level): restored %s (%s, %d entries) in %s, %s/s", r.Hit, k.Level, k.Name,
			buildkite.Bytes(r.Size), r.Stats.Entries, r.Duration.Round(time.Millisecond),
			buildkite.Bytes(buildkite.Rate(r.Size, r.Duration)))
		return r, nil
	}
	c.Log.Infof("Cache miss: none of %d key(s) exists", len(candidates))
	return Restored{Hit: Miss}, nil
}

// errMissing: the key has no object (any more).
var errMissing = errors.New("no object at the key")

// restoreKey downloads and extracts one key, restarting when the object changes under it.
func (c *Cache) restoreKey(ctx context.Context, k cachekey.Key) (Restored, error) {
	start := time.Now()
	r := Restored{Key: k}
	for {
		obj, err := c.Store.Head(ctx, k.Name)
		if errors.Is(err, s3.ErrNotFound) {
			return r, errMissing
		}
		if err != nil {
			return r, err
		}
		if r.Restarts == 0 {
			c.Log.Infof("Found %s (%s)", k.Name, buildkite.Bytes(obj.Size))
		}
		stats, n, err := c.download(ctx, obj)
		r.Size, r.Stats = n, stats
		if err == nil {
			r.Duration = time.Since(start)
			return r, nil
		}
		if ctx.Err() != nil || !restartable(err) {
			return r, err
		}
		if r.Restarts >= c.Restarts {
			return r, fmt.Errorf("gave up after %d restart(s) (download-retries): %w", r.Restarts, err)
		}
		r.Restarts++
		c.Log.Infof("Restarting restore of %s (%d/%d): %v", k.Name, r.Restarts, c.Restarts, err)
	}
}

// restartable errors are those a fresh download can cure: the object changed, vanished, or
// arrived damaged. A hostile archive is not among them.
func restartable(err error) bool {
	if errors.Is(err, archive.ErrUnsafe) {
		return false
	}
	return errors.Is(err, s3.ErrChanged) || errors.Is(err, s3.ErrNotFound) || errors.Is(err, archive.ErrCorrupt)
}

func (c *Cache) download(ctx context.Context, obj s3.Object) (archive.Stats, int64, error) {
	body := c.Store.Open(ctx, obj)
	defer body.Close()
	cr := &countingReader{r: body}
	stop := c.Log.Progress("Downloaded", cr.count, obj.Size, c.progressEvery())
	stats, err := archive.Extract(ctx, cr, c.Paths, c.Compression, c.Log.Warnf)
	stop()
	return stats, cr.count(), err
}

// Saved describes a finished save.
type Saved struct {
	Key      cachekey.Key
	Stored   bool   // false: nothing was written (see Skipped)
	Skipped  string // why nothing was written
	Size     int64  // archive bytes
	Stats    archive.Stats
	Duration time.Duration
}

// conflictRetries bounds restarts after 409 ConditionalRequestConflict.
const conflictRetries = 3

// errTooLarge stops an upload whose archive passed max-size.
var errTooLarge = errors.New("archive larger than max-size")

// Save archives c.Paths and stores them at k, unless an object is there already.
func (c *Cache) Save(ctx context.Context, k cachekey.Key) (Saved, error) {
	start := time.Now()
	s := Saved{Key: k}
	c.Log.Group("Saving cache (%s level)", k.Level)
	if !c.Force {
		if _, err := c.Store.Head(ctx, k.Name); err == nil {
			s.Skipped = "another job already saved " + k.Name
			c.Log.Infof("Cache already saved at %s: nothing to do", k.Name)
			return s, nil
		} else if !errors.Is(err, s3.ErrNotFound) {
			return s, fmt.Errorf("save %s: %w", k.Name, err)
		}
	}
	if !c.anyPathExists() {
		s.Skipped = "nothing to cache"
		c.Log.Warnf("Nothing to save: none of the cache paths exists")
		return s, nil
	}
	for attempt := 0; ; attempt++ {
		res, stats, err := c.upload(ctx, k)
		s.Size, s.Stats = res.Size, stats
		switch {
		case errors.Is(err, errTooLarge):
			s.Skipped = "archive larger than max-size"
			c.Log.Warnf("Not saving %s: the archive is larger than max-size (%s)", k.Name, buildkite.Bytes(c.MaxSize))
			return s, nil
		case errors.Is(err, s3.ErrConflict) && attempt < conflictRetries:
			c.Log.Infof("Conflicting concurrent write to %s; starting the upload again", k.Name)
			continue
		case err != nil:
			return s, fmt.Errorf("save %s: %w", k.Name, err)
		}
		s.Duration = time.Since(start)
		if !res.Stored {
			s.Skipped = "another job already saved " + k.Name
			c.Log.Infof("Another job already saved %s: keeping its copy", k.Name)
			return s, nil
		}
		s.Stored = true
		c.Log.Infof("Saved %s (%s, %d entries) in %s, %s/s", k.Name, buildkite.Bytes(s.Size), s.Stats.Entries,
			s.Duration.Round(time.Millisecond), buildkite.Bytes(buildkite.Rate(s.Size, s.Duration)))
		return s, nil
	}
}

// upload streams the archive into the store through a pipe: no temporary file.
func (c *Cache) upload(ctx context.Context, k cachekey.Key) (s3.Result, archive.Stats, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	var stats archive.Stats
	writeErr := make(chan error, 1)
	go func() {
		var err error
		stats, err = archive.Write(ctx, pw, c.Paths, c.Compression, c.Level, c.Log.Warnf)
		pw.CloseWithError(err)
		writeErr <- err
	}()
	cr := &countingReader{r: pr, limit: c.MaxSize}
	stop := c.Log.Progress("Uploaded", cr.count, 0, c.progressEvery())
	res, err := c.Store.Upload(ctx, k.Name, cr, s3.PutOptions{Overwrite: c.Force})
	stop()
	cancel()
	pr.CloseWithError(context.Canceled) // unblocks the writer if the upload stopped early
	werr := <-writeErr
	if err != nil {
		if werr != nil && !errors.Is(werr, context.Canceled) && !errors.Is(werr, io.ErrClosedPipe) {
			return res, stats, fmt.Errorf("archive: %w", werr) // the cause; the upload only saw its effect
		}
		return res, stats, err
	}
	return res, stats, nil
}

func (c *Cache) anyPathExists() bool {
	for _, p := range c.Paths {
		if _, err := os.Lstat(p); err == nil {
			return true
		}
	}
	return false
}

// countingReader counts bytes for progress lines and enforces an optional limit.
type countingReader struct {
	r     io.Reader
	n     atomic.Int64
	limit int64
}

func (cr *countingReader) Read(p []byte) (int, error) {
	n, err := cr.r.Read(p)
	if total := cr.n.Add(int64(n)); cr.limit > 0 && total > cr.limit {
		return n, errTooLarge
	}
	return n, err
}

func (cr *countingReader) count() int64 { return cr.n.Load() }
