package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/archive"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/buildkite"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cachekey"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/s3"
)

// Store is the object store as this package uses it; *s3.Store implements it.
type Store interface {
	Head(ctx context.Context, key string) (s3.Object, error)
	Open(ctx context.Context, obj s3.Object) io.ReadCloser
	UploadEach(ctx context.Context, keys []string, r io.Reader, o s3.PutOptions) ([]s3.Result, []error)
	Newest(ctx context.Context, prefix string) (s3.Listed, error)
}

// Cache is one cache as configured: what is archived and how. Build it with New.
type Cache struct {
	Store   Store
	Log     *buildkite.Log
	Paths   []string            // absolute paths; archive entry i restores to Paths[i]
	Options config.CacheOptions // as pkg/config decoded them
	// Used, when set, is told the object key of each hit of Restore as its download starts:
	// last-use tracking (docs/design.md#last-use-tracking-and-gc). It must return at once; the
	// restore never waits for what it starts. Lookup, which sends HEAD requests alone, does not
	// call it.
	Used func(key string)
}

// New returns the cache of paths in store, configured by o. Zero options mean their documented
// defaults, applied once where they are used (the compressor's level, archive.DefaultLockTimeout).
// Paths are cleaned (filepath.Clean): the warm-restore walk, the archive and the restore then
// all name one path the same way. An empty path stays empty (cleaned, it would name the
// working directory), and the restore refuses it.
func New(store Store, log *buildkite.Log, paths []string, o config.CacheOptions) *Cache {
	clean := make([]string, len(paths))
	for i, p := range paths {
		if p != "" {
			p = filepath.Clean(p)
		}
		clean[i] = p
	}
	return &Cache{Store: store, Log: log, Paths: clean, Options: o}
}

// lock takes the host locks of c.Paths: exclusive to restore, shared to save.
func (c *Cache) lock(ctx context.Context, exclusive bool) (*archive.Locks, error) {
	return archive.LockTargets(ctx, c.Paths, archive.LockOptions{
		Exclusive: exclusive,
		Timeout:   c.Options.LockTimeout,
		Log:       c.Log,
	})
}

// progressEvery is the interval of progress lines on long transfers.
const progressEvery = 5 * time.Second

// Hit says how a restore went.
type Hit string

// The outcomes of a restore.
const (
	Exact    Hit = "exact"    // the first (narrowest) candidate
	Fallback Hit = "fallback" // a wider candidate, or the newest of a family
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
	// Warm: the paths already held the key's content, untouched since it was restored or
	// saved there at Since (docs/design.md#warm-restores): nothing was downloaded or changed,
	// and Stats counts what the paths hold.
	Warm  bool
	Since time.Time
}

// Restore restores the first of candidates that exists (narrowest first). It
// holds the host locks of the paths throughout, so that no other job on this
// host restores or saves them meanwhile.
func (c *Cache) Restore(ctx context.Context, candidates []cachekey.Key) (Restored, error) {
	locks, err := c.lock(ctx, true)
	if err != nil {
		return Restored{Hit: Miss}, fmt.Errorf("restore: %w", err)
	}
	defer locks.Unlock()
	early := c.walkEarly(ctx, candidates)
	defer early.stop()
	for i, k := range candidates {
		c.Log.Group("Restoring cache (%s level)", k.Level)
		k, err := c.resolve(ctx, k)
		if errors.Is(err, errMissing) {
			continue
		}
		if err != nil {
			return Restored{Hit: Miss}, fmt.Errorf("restore: %w", err)
		}
		r, err := c.restoreKey(ctx, k, early)
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
		r.Hit = hitAt(i, candidates[i])
		if r.Warm {
			c.Log.Infof("Cache hit (%s): %s already holds %s, untouched since %s; nothing downloaded", r.Hit,
				strings.Join(c.Paths, ", "), k.Name, r.Since.UTC().Format(time.RFC3339))
			return r, nil
		}
		c.Log.Infof("Cache hit (%s, %s level): restored %s (%s, %d entries) in %s, %s/s", r.Hit, k.Level, k.Name,
			buildkite.Bytes(r.Size), r.Stats.Entries, r.Duration.Round(time.Millisecond),
			buildkite.Bytes(buildkite.Rate(r.Size, r.Duration)))
		return r, nil
	}
	c.Log.Infof("Cache miss: none of %d key(s) exists", len(candidates))
	return Restored{Hit: Miss}, nil
}

// hitAt is the kind of a hit on candidate i, k: the narrowest is exact, unless it stands for a
// family (cachekey.Family), whose newest member is never the exact key.
func hitAt(i int, k cachekey.Key) Hit {
	if i == 0 && !k.Newest {
		return Exact
	}
	return Fallback
}

// Lookup finds the candidate Restore would take (the first that exists, narrowest first) with
// HEAD requests only: nothing is downloaded, no host lock is taken and the paths are not
// touched. Size is 0: nothing was downloaded.
func (c *Cache) Lookup(ctx context.Context, candidates []cachekey.Key) (Restored, error) {
	start := time.Now()
	for i, k := range candidates {
		c.Log.Group("Looking up cache (%s level)", k.Level)
		k, err := c.resolve(ctx, k)
		if errors.Is(err, errMissing) {
			continue
		}
		if err != nil {
			return Restored{Hit: Miss}, fmt.Errorf("look up: %w", err)
		}
		obj, err := c.Store.Head(ctx, k.Name)
		if errors.Is(err, s3.ErrNotFound) {
			c.Log.Infof("No cache at %s", k.Name)
			continue
		}
		if err != nil {
			return Restored{Hit: Miss}, fmt.Errorf("look up %s: %w", k.Name, err)
		}
		r := Restored{Hit: hitAt(i, candidates[i]), Key: k, Duration: time.Since(start)}
		c.Log.Infof("Cache hit (%s, %s level): found %s (%s); lookup-only, so nothing is restored", r.Hit, k.Level, k.Name,
			buildkite.Bytes(obj.Size))
		return r, nil
	}
	c.Log.Infof("Cache miss: none of %d key(s) exists", len(candidates))
	return Restored{Hit: Miss}, nil
}

// resolve returns the key a candidate stands for: itself, or for a family (cachekey.Family) its
// most recently saved object, from one listing; errMissing when the family is empty.
func (c *Cache) resolve(ctx context.Context, fam cachekey.Key) (cachekey.Key, error) {
	if !fam.Newest {
		return fam, nil
	}
	l, err := c.Store.Newest(ctx, fam.Name)
	if errors.Is(err, s3.ErrNotFound) {
		c.Log.Infof("No cache in %s (any manifest)", fam.Name)
		return fam, errMissing
	}
	if err != nil {
		return fam, fmt.Errorf("the newest of %s: %w", fam.Name, err)
	}
	more := ""
	if l.Truncated {
		more = fmt.Sprintf(" (of the first %d listed: the family has more)", l.Count)
	}
	c.Log.Infof("Newest of %d cache(s) with any manifest%s: %s, saved %s", l.Count, more, l.Key,
		l.Modified.UTC().Format(time.RFC3339))
	return cachekey.Key{Level: fam.Level, Name: l.Key, Namespace: fam.Namespace}, nil
}

// used reports a hit of key to c.Used, if set.
func (c *Cache) used(key string) {
	if c.Used != nil {
		c.Used(key)
	}
}

// errMissing: the key has no object (any more).
var errMissing = errors.New("no object at the key")

// restoreKey downloads and extracts one key, restarting when the object changes under it. early
// is the walk of the paths for a warm restore, if begun (walkEarly); a download stops it.
func (c *Cache) restoreKey(ctx context.Context, k cachekey.Key, early *earlyWalk) (Restored, error) {
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
			c.used(k.Name)
			if t, st, ok := c.warm(ctx, obj, early); ok {
				r.Warm, r.Since, r.Duration = true, st.At, time.Since(start)
				r.Stats = archive.Stats{Entries: t.entries, Bytes: t.bytes}
				return r, nil
			}
		}
		early.stop()
		stats, n, err := c.download(ctx, obj)
		r.Size, r.Stats = n, stats
		if err == nil {
			r.Duration = time.Since(start)
			c.stampRestore(ctx, obj, time.Now())
			return r, nil
		}
		if ctx.Err() != nil || !restartable(err) {
			return r, err
		}
		if r.Restarts >= c.Options.Restarts {
			return r, fmt.Errorf("gave up after %d restart(s) (download-retries): %w", r.Restarts, err)
		}
		r.Restarts++
		c.Log.Infof("Restarting restore of %s (%d/%d): %v", k.Name, r.Restarts, c.Options.Restarts, err)
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
	stop := c.Log.Progress("Downloaded", cr.count, obj.Size, progressEvery)
	stats, err := archive.Extract(ctx, cr, c.Paths, c.Options.Compression, c.Log)
	stop()
	return stats, cr.count(), err
}

// Saved describes a finished save.
type Saved struct {
	Key      cachekey.Key
	Stored   bool   // false: nothing was written (see Skipped)
	Skipped  string // why nothing was written
	Size     int64  // archive bytes
	ETag     string // of the object stored, when Stored and the store tells
	Stats    archive.Stats
	Duration time.Duration
}

// conflictRestarts bounds the restarts of a whole save after 409 ConditionalRequestConflict.
const conflictRestarts = 3

var (
	// errTooLarge stops an upload whose archive passed max-size.
	errTooLarge = errors.New("archive larger than max-size")
	// errUploadEnded stops the archive writer when no upload reads any more.
	errUploadEnded = errors.New("every upload ended")
)

// Save stores c.Paths at every key that has no object yet (every key, with Force). The paths
// are walked and compressed once; the archive streams into one upload per key at the same time.
func (c *Cache) Save(ctx context.Context, keys []cachekey.Key) ([]Saved, error) {
	saved := make([]Saved, len(keys))
	var pending []int
	levels := make([]string, len(keys))
	for i, k := range keys {
		saved[i].Key, levels[i] = k, string(k.Level)
	}
	if len(levels) == 1 {
		c.Log.Group("Saving cache (%s level)", levels[0])
	} else {
		c.Log.Group("Saving cache (%s levels)", strings.Join(levels, ", "))
	}
	for i, k := range keys {
		if !c.Options.Force {
			_, err := c.Store.Head(ctx, k.Name)
			switch {
			case err == nil:
				saved[i].Skipped = "another job already saved " + k.Name
				c.Log.Infof("Cache already saved at %s: nothing to do", k.Name)
				continue
			case !errors.Is(err, s3.ErrNotFound):
				return saved, fmt.Errorf("save %s: %w", k.Name, err)
			}
		}
		pending = append(pending, i)
	}
	if len(pending) == 0 {
		return saved, nil
	}
	// Reading the paths while another job on this host restores them would
	// archive a mix of two trees.
	locks, err := c.lock(ctx, false)
	if err != nil {
		return saved, fmt.Errorf("save: %w", err)
	}
	defer locks.Unlock()
	if !c.anyPathExists() {
		for _, i := range pending {
			saved[i].Skipped = "nothing to cache"
		}
		c.Log.Warnf("Nothing to save: none of the cache paths exists")
		return saved, nil
	}

	// Whether the paths changed while the archive read them, for the stamp a save records for
	// warm restores (docs/design.md#warm-restores): noted before the first archive reads them,
	// the tree recorded as each archive reads it.
	watch := c.watchSave()
	defer func() { c.stampSave(ctx, watch, saved) }()
	start := time.Now()
	var errs []error
	for restarts := 0; len(pending) > 0; restarts++ {
		results, stats, err := c.uploadAll(ctx, keys, pending, watch)
		if errors.Is(err, errTooLarge) {
			for _, i := range pending {
				saved[i].Skipped = "archive larger than max-size"
			}
			c.Log.Warnf("Not saving: the archive is larger than max-size (%s)", buildkite.Bytes(c.Options.MaxSize))
			return saved, nil
		}
		if err != nil {
			return saved, fmt.Errorf("save: archive: %w", err)
		}
		var retry []int
		for j, i := range pending {
			k, r := keys[i], results[j]
			s := &saved[i]
			s.Size, s.Stats, s.Duration = r.res.Size, stats, time.Since(start)
			switch {
			case errors.Is(r.err, s3.ErrConflict) && restarts < conflictRestarts:
				c.Log.Infof("Conflicting concurrent write to %s; starting the upload again", k.Name)
				retry = append(retry, i)
			case r.err != nil:
				errs = append(errs, fmt.Errorf("save %s: %w", k.Name, r.err))
			case !r.res.Stored:
				s.Skipped = "another job already saved " + k.Name
				c.Log.Infof("Another job already saved %s: keeping its copy", k.Name)
			default:
				s.Stored, s.ETag = true, r.res.ETag
				c.Log.Infof("Saved %s (%s, %d entries) in %s, %s/s", k.Name, buildkite.Bytes(s.Size), s.Stats.Entries,
					s.Duration.Round(time.Millisecond), buildkite.Bytes(buildkite.Rate(s.Size, s.Duration)))
			}
		}
		pending = retry
	}
	return saved, errors.Join(errs...)
}

type uploaded struct {
	res s3.Result
	err error
}

// uploadAll streams one archive through a pipe (no temporary file) into the store, which
// buffers each part once for every pending key. An upload that fails stops taking parts and
// the others go on. watch, when set, gets the tree the archive read; uploadAll returns when
// the archive has been written and the uploads have ended.
func (c *Cache) uploadAll(ctx context.Context, keys []cachekey.Key, pending []int, watch *saveWatch) ([]uploaded, archive.Stats, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	out := &countingWriter{w: pw, limit: c.Options.MaxSize}

	var stats archive.Stats
	var writeErr error
	writer := make(chan struct{})
	go func() {
		defer close(writer)
		var obs archive.Observer // a nil *treeRecorder is not a nil Observer
		rec := watch.recorder(len(c.Paths))
		if rec != nil {
			obs = rec
		}
		stats, writeErr = archive.WriteObserved(ctx, out, c.Paths, c.Options.Compression, c.Options.CompressionLevel, c.Log, obs)
		pw.CloseWithError(writeErr) // at its end (nil) or with the archive's error
		if writeErr == nil && rec != nil {
			watch.written(rec)
		}
	}()
	stop := c.Log.Progress("Uploaded", out.count, 0, progressEvery)
	names := make([]string, len(pending))
	for j, i := range pending {
		names[j] = keys[i].Name
	}
	res, errs := c.Store.UploadEach(ctx, names, pr, s3.PutOptions{Overwrite: c.Options.Force})
	pr.CloseWithError(errUploadEnded)
	stop()
	results := make([]uploaded, len(pending))
	for j := range pending {
		results[j] = uploaded{res: res[j], err: errs[j]}
	}
	<-writer
	if writeErr != nil && !errors.Is(writeErr, errUploadEnded) {
		return results, stats, writeErr // the cause; the uploads only saw its effect
	}
	return results, stats, nil
}

// countingWriter counts bytes for progress lines and enforces an optional limit.
type countingWriter struct {
	w     io.Writer
	n     atomic.Int64
	limit int64
}

func (cw *countingWriter) Write(p []byte) (int, error) {
	if total := cw.n.Add(int64(len(p))); cw.limit > 0 && total > cw.limit {
		return 0, errTooLarge
	}
	return cw.w.Write(p)
}

func (cw *countingWriter) count() int64 { return cw.n.Load() }

func (c *Cache) anyPathExists() bool {
	for _, p := range c.Paths {
		if _, err := os.Lstat(p); err == nil {
			return true
		}
	}
	return false
}

// countingReader counts bytes for progress lines.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (cr *countingReader) Read(p []byte) (int, error) {
	n, err := cr.r.Read(p)
	cr.n.Add(int64(n))
	return n, err
}

func (cr *countingReader) count() int64 { return cr.n.Load() }
