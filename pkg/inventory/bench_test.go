package inventory_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/s3test"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cachekey"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/inventory"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/s3"
)

// BenchmarkLs20k times `s3-cache ls` (the whole command: store, one listing, parse, table) over
// 20,000 objects on versitygw: 16,000 caches of 200 pipelines and 4,000 last-use markers.
// go test -run - -bench Ls20k -benchtime 3x ./pkg/inventory/
func BenchmarkLs20k(b *testing.B) {
	s3test.Integration(b)
	srv, err := s3test.Start(b.Context(), s3test.Versitygw, b.TempDir(), "cache")
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Stop()
	client := srv.Client()
	keys := make(chan string)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for k := range keys {
				if _, err := client.PutObject(b.Context(), &awss3.PutObjectInput{Bucket: &srv.Bucket, Key: &k,
					Body: bytes.NewReader([]byte("x"))}); err != nil {
					panic(err)
				}
			}
		})
	}
	start := time.Now()
	for i := range 16000 {
		sum := sha256.Sum256([]byte(fmt.Sprint(i)))
		key := fmt.Sprintf("cache/acme/pipeline-%03d/branch/b-%d/%x.tar.zst", i%200, i/200%80, sum[:16])
		keys <- key
		if i%4 == 0 {
			keys <- cachekey.UsedMarker("cache", key, time.Now())
		}
	}
	close(keys)
	wg.Wait()
	b.Logf("created 20,000 objects in %s", time.Since(start).Round(time.Millisecond))
	env := append(srv.Env(), config.Prefix+"PREFIX=cache")
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		b.Setenv(k, v)
	}
	var errs bytes.Buffer
	c := &inventory.Command{Stdout: io.Discard, Stderr: &errs, Environ: env}
	b.Run("s3-cache ls", func(b *testing.B) {
		for b.Loop() {
			if st := c.Main(b.Context(), []string{"ls"}); st != 0 {
				b.Fatalf("ls: exit %d: %s", st, errs.String())
			}
		}
	})
	// For comparison: one listing of the whole prefix, page after page.
	store, err := srv.Store(b.Context(), 0, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("one sequential listing", func(b *testing.B) {
		for b.Loop() {
			n := 0
			if err := store.List(b.Context(), "cache/", func(page []s3.Entry) error { n += len(page); return nil }); err != nil || n != 20000 {
				b.Fatalf("listed %d: %v", n, err)
			}
		}
	})
}
