package cache_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/s3test"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/archive"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/buildkite"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cache"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cachekey"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/s3"
)

// pausing is the real store, except that the bytes of a download or of an
// upload stop flowing after the first `after` until release is closed:
// the job is then caught in the middle of its restore or save.
type pausing struct {
	cache.Store
	after   int64
	paused  chan struct{} // closed when the transfer stops
	release chan struct{}
	once    sync.Once
}

func newPausing(s cache.Store, after int64) *pausing {
	return &pausing{Store: s, after: after, paused: make(chan struct{}), release: make(chan struct{})}
}

func (p *pausing) Open(ctx context.Context, obj s3.Object) io.ReadCloser {
	rc := p.Store.Open(ctx, obj)
	return struct {
		io.Reader
		io.Closer
	}{&pauseReader{r: rc, p: p}, rc}
}

func (p *pausing) UploadEach(ctx context.Context, keys []string, r io.Reader, o s3.PutOptions) ([]s3.Result, []error) {
	return p.Store.UploadEach(ctx, keys, &pauseReader{r: r, p: p}, o)
}

type pauseReader struct {
	r io.Reader
	p *pausing
	n int64
}

func (r *pauseReader) Read(b []byte) (int, error) {
	if r.n >= r.p.after {
		r.p.once.Do(func() { close(r.p.paused) })
		<-r.p.release
	} else if left := r.p.after - r.n; int64(len(b)) > left {
		b = b[:left]
	}
	n, err := r.r.Read(b)
	r.n += int64(n)
	return n, err
}

// syncBuffer is a log that one goroutine writes while another reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// fillTree writes 40 files of 64 KiB of random bytes: two calls give trees
// with the same names and different contents.
func fillTree(t *testing.T, dir string) {
	t.Helper()
	for i := range 40 {
		b := make([]byte, 64<<10)
		_, _ = rand.Read(b)
		p := filepath.Join(dir, fmt.Sprintf("d%02d", i), "file")
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, b, 0o644))
	}
}

// otherJob runs job in a goroutine, like a job of another agent on the same
// host, and waits until it either finished or logged that it waits for the
// host lock. It returns the job's result channel and whether it waited.
func otherJob(t *testing.T, log *syncBuffer, job func() error) (done chan error, waiting bool) {
	t.Helper()
	done = make(chan error, 1)
	go func() { done <- job() }()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			done <- err
			return done, false
		default:
		}
		if strings.Contains(log.String(), "Waiting for another job on this host to finish with") {
			return done, true
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the other job neither finished nor waited in a minute; log:\n%s", log)
	return nil, false
}

// TestJobsOnOneHost: two jobs of agents on one host use the same path. A
// restore or save in progress makes the other job wait for it (and say so),
// so a restore that started first never replaces the tree of one that
// finished (with what the job added to it), and a save never archives a mix
// of the tree it started reading and the tree another job restored.
func TestJobsOnOneHost(t *testing.T) {
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		newJob := func(t *testing.T, paths []string, log io.Writer, wrap func(cache.Store) cache.Store) *cache.Cache {
			store, err := srv.Store(t.Context(), 2, partSize)
			must(t, err)
			return cache.New(wrap(store), buildkite.NewLog(log), paths, config.CacheOptions{Compression: archive.Zstd, Restarts: 1})
		}
		plain := func(s cache.Store) cache.Store { return s }
		// saveTree stores a fresh tree at key name and returns a copy of it.
		saveTree := func(t *testing.T, name string) (cachekey.Key, string) {
			src := filepath.Join(t.TempDir(), "tree")
			fillTree(t, src)
			k := key(name)
			saved, err := saveOne(t, newJob(t, []string{src}, io.Discard, plain), k)
			must(t, err)
			if !saved.Stored {
				t.Fatalf("%s not stored: %+v", name, saved)
			}
			return k, src
		}

		t.Run("restore while another restores", func(t *testing.T) {
			kA, _ := saveTree(t, "host/restore-a.tar.zst")
			kB, treeB := saveTree(t, "host/restore-b.tar.zst")
			target := filepath.Join(t.TempDir(), "shared", ".npm")

			// Job 1 restores A and is caught halfway through its download.
			p := newPausing(nil, 1<<20)
			job1 := newJob(t, []string{target}, io.Discard, func(s cache.Store) cache.Store { p.Store = s; return p })
			done1 := make(chan error, 1)
			go func() { _, err := job1.Restore(t.Context(), []cachekey.Key{kA}); done1 <- err }()
			<-p.paused

			// Job 2 restores B, then its build adds to the tree.
			var log2 syncBuffer
			job2 := newJob(t, []string{target}, &log2, plain)
			added := filepath.Join(target, "added-by-job-2")
			done2, waited := otherJob(t, &log2, func() error {
				_, err := job2.Restore(t.Context(), []cachekey.Key{kB})
				return err
			})
			if !waited {
				must(t, <-done2)
				must(t, os.WriteFile(added, []byte("job 2's build output"), 0o644))
				done2 <- nil
			}
			close(p.release)
			must(t, <-done1)
			must(t, <-done2)
			if waited {
				must(t, os.WriteFile(added, []byte("job 2's build output"), 0o644))
			}

			if _, err := os.Stat(added); err != nil {
				t.Errorf("what job 2 added to its restored tree is gone: %v", err)
			} else {
				must(t, os.Remove(added))
			}
			if got, want := listing(t, target), listing(t, treeB); got != want {
				t.Errorf("the target is not the tree job 2 restored:\n%s\nwant:\n%s", got, want)
			}
			if !waited {
				t.Errorf("job 2 did not wait for job 1; its log:\n%s", log2.String())
			}
		})

		t.Run("save while another restores", func(t *testing.T) {
			kB, treeB := saveTree(t, "host/save-b.tar.zst")
			target := filepath.Join(t.TempDir(), "shared", ".npm")
			fillTree(t, target)
			want := listing(t, target)

			// Job 1 saves the target and is caught after its first bytes.
			kS := key("host/save-s.tar.zst")
			p := newPausing(nil, 256<<10)
			job1 := newJob(t, []string{target}, io.Discard, func(s cache.Store) cache.Store { p.Store = s; return p })
			done1 := make(chan error, 1)
			go func() { _, err := saveOne(t, job1, kS); done1 <- err }()
			<-p.paused

			// Job 2 restores B into the same path.
			var log2 syncBuffer
			job2 := newJob(t, []string{target}, &log2, plain)
			done2, waited := otherJob(t, &log2, func() error {
				_, err := job2.Restore(t.Context(), []cachekey.Key{kB})
				return err
			})
			close(p.release)
			must(t, <-done1)
			must(t, <-done2)

			dst := filepath.Join(t.TempDir(), "restored")
			_, err := newJob(t, []string{dst}, io.Discard, plain).Restore(t.Context(), []cachekey.Key{kS})
			must(t, err)
			if got := listing(t, dst); got != want {
				t.Errorf("job 1 saved a tree that is not the one it started reading:\n%s\nwant:\n%s", got, want)
			}
			if got, want := listing(t, target), listing(t, treeB); got != want {
				t.Errorf("the target is not the tree job 2 restored:\n%s\nwant:\n%s", got, want)
			}
			if !waited {
				t.Errorf("job 2 did not wait for job 1; its log:\n%s", log2.String())
			}
		})
	})
}

// TestLockTimeout: a job that cannot get the host lock in time gives up with
// an error (a warning under soft-fail) after saying it waits, and leaves the
// path alone; its context ends the wait too.
func TestLockTimeout(t *testing.T) {
	target := filepath.Join(t.TempDir(), "shared", ".npm")
	fillTree(t, target)
	want := listing(t, target)
	held, err := archive.LockTargets(t.Context(), []string{target}, archive.LockOptions{Exclusive: true})
	must(t, err)
	defer held.Unlock()

	var log bytes.Buffer
	c := cache.New(nil, buildkite.NewLog(&log), []string{target}, config.CacheOptions{Compression: archive.Zstd,
		Force: true, LockTimeout: 200 * time.Millisecond}) // Force: Save asks the store nothing first
	if _, err := c.Restore(t.Context(), []cachekey.Key{key("k")}); !errors.Is(err, archive.ErrLockTimeout) {
		t.Errorf("restore: got %v, want ErrLockTimeout", err)
	}
	if _, err := c.Save(t.Context(), []cachekey.Key{key("k")}); !errors.Is(err, archive.ErrLockTimeout) {
		t.Errorf("save: got %v, want ErrLockTimeout", err)
	}
	if n := strings.Count(log.String(), "Waiting for another job on this host to finish with "+target+"…"); n != 2 {
		t.Errorf("%d waiting lines, want 2; log:\n%s", n, log.String())
	}
	if got := listing(t, target); got != want {
		t.Errorf("the path changed:\n%s\nwant:\n%s", got, want)
	}

	c = cache.New(nil, buildkite.NewLog(&log), []string{target}, config.CacheOptions{Compression: archive.Zstd,
		Force: true, LockTimeout: time.Hour})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Restore(ctx, []cachekey.Key{key("k")}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled restore: got %v, want context.DeadlineExceeded", err)
	}
}
