package plugin

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/s3test"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/archive"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/buildkite"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cache"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cachekey"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
)

// BenchmarkRestoreTracking times restores from versitygw without last-use tracking and with it,
// as pre-command does it (the marker started with the download, then a wait of at most a
// second), writing the marker on every restore (a fresh stamp directory each time): the worst
// case, as an agent sends at most one an hour per key. It reports the mean restore of each kind
// (the hook's wait included) and the wait alone. It restores 3,000 small files, or the tree
// S3_CACHE_BENCH_TREE names:
//
//	go test -run - -bench RestoreTracking -benchtime 10x ./pkg/plugin/
//	S3_CACHE_BENCH_TREE=~/.cache/s3-cache-bench/node/node_modules go test -run - -bench RestoreTracking -benchtime 4x ./pkg/plugin/
func BenchmarkRestoreTracking(b *testing.B) {
	s3test.Integration(b)
	srv, err := s3test.Start(b.Context(), s3test.Versitygw, b.TempDir(), "cache")
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Stop()
	store, err := srv.Store(b.Context(), 0, 0)
	if err != nil {
		b.Fatal(err)
	}
	// S3_CACHE_BENCH_TREE names a tree to restore instead (the node corpus of scripts/bench).
	src := os.Getenv("S3_CACHE_BENCH_TREE")
	if src == "" {
		src = filepath.Join(b.TempDir(), "node_modules")
		for i := range 3000 {
			dir := filepath.Join(src, fmt.Sprintf("pkg-%03d", i/10))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d.js", i)), bytes.Repeat([]byte(fmt.Sprintf("module %d;\n", i)), 100), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	var log bytes.Buffer
	opts := config.CacheOptions{Compression: archive.Zstd, Restarts: 3}
	k := cachekey.Key{Level: config.LevelPipeline, Name: "p/acme/web/pipeline/0123456789abcdef0123456789abcdef.tar.zst"}
	if _, err := cache.New(store, buildkite.NewLog(&log), []string{src}, opts).Save(b.Context(), []cachekey.Key{k}); err != nil {
		b.Fatal(err)
	}
	// restore restores the tree once, with or without tracking, and returns how long the
	// restore took and how long the hook then waited for the marker.
	restore := func(b *testing.B, tracked bool) (took, waited time.Duration) {
		dst := filepath.Join(b.TempDir(), "node_modules")
		c := cache.New(store, buildkite.NewLog(&log), []string{dst}, opts)
		var u *usage
		if tracked {
			u = &usage{ctx: b.Context(), store: store, prefix: "p", scope: "bench", dir: filepath.Join(b.TempDir(), "state"),
				log: buildkite.NewLog(&log), now: time.Now}
			c.Used = u.used
		}
		start := time.Now()
		if r, err := c.Restore(b.Context(), []cachekey.Key{k}); err != nil || r.Hit != cache.Exact {
			b.Fatalf("restore: %+v, %v\n%s", r, err, log.String())
		}
		took = time.Since(start)
		u.wait()
		return took, time.Since(start) - took
	}
	// Each iteration restores untracked and tracked, in alternating order, so that a trend of the
	// machine (the disk slows as restored trees pile up) hits both alike.
	var untracked, tracked, waited time.Duration
	i := 0
	for b.Loop() {
		order := []bool{false, true}
		if i%2 == 1 {
			order = []bool{true, false}
		}
		i++
		for _, t := range order {
			took, w := restore(b, t)
			if t {
				tracked += took + w
				waited += w
			} else {
				untracked += took + w
			}
		}
	}
	n := float64(b.N)
	b.ReportMetric(untracked.Seconds()/n, "s-untracked/op")
	b.ReportMetric(tracked.Seconds()/n, "s-tracked/op")
	b.ReportMetric(float64(waited.Microseconds())/n, "µs-waited/op")
}
