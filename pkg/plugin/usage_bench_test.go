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

// BenchmarkRestoreTracking times a restore of 3,000 small files from versitygw without last-use
// tracking and with it, as pre-command does it (the marker started with the download, then a wait
// of at most a second), writing the marker on every restore (a fresh stamp directory each time):
// the worst case, as an agent sends at most one an hour per key.
// go test -run - -bench RestoreTracking -benchtime 10x ./pkg/plugin/
// S3_CACHE_BENCH_TREE=~/.cache/s3-cache-bench/node/node_modules go test -run - -bench RestoreTracking -benchtime 2x ./pkg/plugin/
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
	restore := func(b *testing.B, tracked bool) {
		var waited time.Duration // what the hook spends waiting for the marker after the restore
		defer func() { b.ReportMetric(float64(waited.Microseconds())/float64(b.N), "µs-waited/op") }()
		for b.Loop() {
			dst := filepath.Join(b.TempDir(), "node_modules")
			c := cache.New(store, buildkite.NewLog(&log), []string{dst}, opts)
			var u *usage
			if tracked {
				u = &usage{ctx: b.Context(), store: store, prefix: "p", scope: "bench", dir: filepath.Join(b.TempDir(), "state"),
					log: buildkite.NewLog(&log), now: time.Now}
				c.Used = u.used
			}
			if r, err := c.Restore(b.Context(), []cachekey.Key{k}); err != nil || r.Hit != cache.Exact {
				b.Fatalf("restore: %+v, %v\n%s", r, err, log.String())
			}
			start := time.Now()
			u.wait()
			waited += time.Since(start)
		}
	}
	// Interleaved rounds, so that a change of load on the machine hits both alike.
	for round := range 3 {
		b.Run(fmt.Sprintf("untracked-%d", round), func(b *testing.B) { restore(b, false) })
		b.Run(fmt.Sprintf("tracked-%d", round), func(b *testing.B) { restore(b, true) })
	}
}
