package cache_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/klauspost/compress/zstd"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/s3test"
	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/treetest"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/archive"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/buildkite"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cache"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cachekey"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/s3"
)

const partSize = 5 << 20 // S3's smallest part: multipart uploads and several ranges with small archives

func newCache(t *testing.T, srv *s3test.Server, paths []string, concurrency int) (*cache.Cache, *s3.Store, *bytes.Buffer) {
	t.Helper()
	store, err := srv.Store(t.Context(), concurrency, partSize)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	return cache.New(store, buildkite.NewLog(&log), paths,
		config.CacheOptions{Compression: archive.Zstd, Restarts: 3}), store, &log
}

// makeTree writes a small tree plus random bytes (incompressible) of the given size.
func makeTree(t *testing.T, dir string, random int) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Join(dir, "sub", "deep"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "a.txt"), []byte("hello"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "sub", "run.sh"), []byte("#!/bin/sh\n"), 0o755))
	must(t, os.Symlink("../a.txt", filepath.Join(dir, "sub", "link")))
	if random > 0 {
		b := make([]byte, random)
		_, _ = rand.Read(b)
		must(t, os.WriteFile(filepath.Join(dir, "sub", "deep", "blob.bin"), b, 0o600))
	}
}

func listing(t *testing.T, dir string) string { return treetest.Listing(t, dir) }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func key(name string) cachekey.Key { return cachekey.Key{Level: config.LevelFile, Name: name} }

func TestSaveThenRestore(t *testing.T) {
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		for _, tc := range []struct {
			name   string
			random int
		}{
			{"single PUT", 1 << 10},
			{"multipart", 3*partSize + 12345},
		} {
			t.Run(tc.name, func(t *testing.T) {
				src := filepath.Join(t.TempDir(), "node_modules")
				makeTree(t, src, tc.random)
				saver, store, _ := newCache(t, srv, []string{src}, 4)
				k := key("roundtrip/" + strings.ReplaceAll(tc.name, " ", "-") + ".tar.zst")
				saved, err := saveOne(t, saver, k)
				must(t, err)
				if !saved.Stored {
					t.Fatalf("not stored: %+v", saved)
				}

				dst := filepath.Join(t.TempDir(), "node_modules")
				restorer, _, _ := newCache(t, srv, []string{dst}, 4)
				got, err := restorer.Restore(t.Context(), []cachekey.Key{k})
				must(t, err)
				if got.Hit != cache.Exact || got.Key != k {
					t.Fatalf("restore = %+v, want exact hit of %s", got, k.Name)
				}
				if a, b := listing(t, src), listing(t, dst); a != b {
					t.Fatalf("restored tree differs:\n%s\nwant:\n%s", b, a)
				}
				noUploadsLeft(t, srv, store)
			})
		}
	})
}

func TestRestoreFallsBackToAWiderLevel(t *testing.T) {
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		src := filepath.Join(t.TempDir(), "cache")
		makeTree(t, src, 0)
		c, _, _ := newCache(t, srv, []string{src}, 2)
		branch := cachekey.Key{Level: config.LevelBranch, Name: "fallback/branch.tar.zst"}
		_, err := saveOne(t, c, branch)
		must(t, err)

		dst := filepath.Join(t.TempDir(), "cache")
		r, _, log := newCache(t, srv, []string{dst}, 2)
		got, err := r.Restore(t.Context(), []cachekey.Key{key("fallback/file.tar.zst"), branch})
		must(t, err)
		if got.Hit != cache.Fallback || got.Key != branch {
			t.Fatalf("restore = %+v, want fallback to %s\n%s", got, branch.Name, log)
		}
		got, err = r.Restore(t.Context(), []cachekey.Key{key("fallback/none.tar.zst")})
		must(t, err)
		if got.Hit != cache.Miss {
			t.Fatalf("restore of a missing key = %+v, want a miss", got)
		}
	})
}

// Parallel jobs of one step compute the same key and save it at the same moment: every one
// succeeds, exactly one object is created, and it is never replaced.
func TestConcurrentSavesStoreOneObject(t *testing.T) {
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		for _, tc := range []struct {
			name   string
			random int
		}{
			{"single PUT", 1 << 10},
			{"multipart", 2*partSize + 1},
		} {
			t.Run(tc.name, func(t *testing.T) {
				k := key("concurrent/" + strings.ReplaceAll(tc.name, " ", "-") + ".tar.zst")
				const jobs = 8
				var wg sync.WaitGroup
				results := make([]cache.Saved, jobs)
				errs := make([]error, jobs)
				var store *s3.Store
				for i := range jobs {
					src := filepath.Join(t.TempDir(), "cache")
					makeTree(t, src, tc.random) // random content: a second writer would change the ETag
					c, s, _ := newCache(t, srv, []string{src}, 2)
					store = s
					wg.Add(1)
					go func() {
						defer wg.Done()
						results[i], errs[i] = saveOne(t, c, k)
					}()
				}
				wg.Wait()
				stored := 0
				for i := range jobs {
					must(t, errs[i])
					if results[i].Stored {
						stored++
					}
				}
				if stored != 1 {
					t.Fatalf("%d saves stored an object, want exactly 1: %+v", stored, results)
				}
				before, err := store.Head(t.Context(), k.Name)
				must(t, err)

				// A later save leaves it alone, even when its upload races past the HEAD check.
				src := filepath.Join(t.TempDir(), "cache")
				makeTree(t, src, tc.random)
				c, _, _ := newCache(t, srv, []string{src}, 2)
				res, err := c.Store.(*s3.Store).Upload(t.Context(), k.Name, strings.NewReader("other bytes"), s3.PutOptions{})
				must(t, err)
				if res.Stored {
					t.Fatal("a conditional upload replaced an existing object")
				}
				after, err := store.Head(t.Context(), k.Name)
				must(t, err)
				if before.ETag != after.ETag {
					t.Fatalf("ETag changed from %s to %s", before.ETag, after.ETag)
				}
				noUploadsLeft(t, srv, store)
			})
		}
	})
}

func TestForceOverwrites(t *testing.T) {
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		store, err := srv.Store(t.Context(), 2, partSize)
		must(t, err)
		k := "force/key"
		_, err = store.Upload(t.Context(), k, strings.NewReader("first"), s3.PutOptions{})
		must(t, err)
		res, err := store.Upload(t.Context(), k, strings.NewReader("second"), s3.PutOptions{Overwrite: true})
		must(t, err)
		if !res.Stored {
			t.Fatal("force did not overwrite")
		}
		obj, err := store.Head(t.Context(), k)
		must(t, err)
		if obj.Size != int64(len("second")) {
			t.Fatalf("size %d after overwrite", obj.Size)
		}
	})
}

func noUploadsLeft(t *testing.T, srv *s3test.Server, store *s3.Store) {
	t.Helper()
	out, err := srv.Client().ListMultipartUploads(t.Context(), &awss3.ListMultipartUploadsInput{Bucket: aws.String(store.Bucket())})
	must(t, err)
	if len(out.Uploads) != 0 {
		t.Fatalf("%d multipart uploads left behind", len(out.Uploads))
	}
}

// hostile builds a zstd-compressed tar of the given headers (regular entries get "x" as content).
func hostile(t *testing.T, headers ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	must(t, err)
	tw := tar.NewWriter(zw)
	for _, h := range headers {
		if h.Typeflag == tar.TypeReg {
			h.Size = 1
		}
		must(t, tw.WriteHeader(h))
		if h.Typeflag == tar.TypeReg {
			_, err := tw.Write([]byte("x"))
			must(t, err)
		}
	}
	must(t, tw.Close())
	must(t, zw.Close())
	return buf.Bytes()
}

// An archive at a cache key that would write outside its target is refused as a whole, and the
// target is left exactly as it was.
func TestRestoreRefusesHostileArchives(t *testing.T) {
	dir := func(name string) *tar.Header { return &tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755} }
	file := func(name string) *tar.Header { return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644} }
	link := func(name, target string) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777}
	}
	cases := map[string][]*tar.Header{
		"dot-dot":         {dir("0/"), file("0/ok"), file("0/../escape")},
		"leading dot-dot": {dir("0/"), file("../escape")},
		"absolute":        {dir("0/"), file("/tmp/s3-cache-escape")},
		"symlink escape":  {dir("0/"), link("0/link", "/tmp"), file("0/link/s3-cache-escape")},
		"hard link out":   {dir("0/"), {Name: "0/h", Typeflag: tar.TypeLink, Linkname: "../../etc/passwd"}},
	}
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		for name, headers := range cases {
			t.Run(name, func(t *testing.T) {
				dst := filepath.Join(t.TempDir(), "node_modules")
				makeTree(t, dst, 100)
				before := listing(t, dst)
				parentBefore, _ := os.ReadDir(filepath.Dir(dst))

				c, _, _ := newCache(t, srv, []string{dst}, 2)
				k := key("hostile/" + strings.ReplaceAll(name, " ", "-") + ".tar.zst")
				_, err := srv.Client().PutObject(t.Context(), &awss3.PutObjectInput{
					Bucket: aws.String(srv.Bucket), Key: &k.Name, Body: bytes.NewReader(hostile(t, headers...)),
				})
				must(t, err)
				got, err := c.Restore(t.Context(), []cachekey.Key{k})
				if !errors.Is(err, archive.ErrUnsafe) {
					t.Fatalf("restore of a hostile archive: %+v, %v; want ErrUnsafe", got, err)
				}
				if after := listing(t, dst); after != before {
					t.Fatalf("target changed:\n%s\nwas:\n%s", after, before)
				}
				if parentAfter, _ := os.ReadDir(filepath.Dir(dst)); len(parentAfter) != len(parentBefore) {
					t.Fatalf("staging left behind: %v", parentAfter)
				}
				if _, err := os.Lstat("/tmp/s3-cache-escape"); err == nil {
					t.Fatal("a hostile entry escaped to /tmp/s3-cache-escape")
				}
			})
		}
	})
}

// overwriter overwrites the object once, after the first bytes of the first download were read:
// what a force-save by another job does to a restore in progress.
type overwriter struct {
	cache.Store
	once    sync.Once
	newBody []byte
}

func (o *overwriter) Open(ctx context.Context, obj s3.Object) io.ReadCloser {
	rc := o.Store.Open(ctx, obj)
	return &hookReader{ReadCloser: rc, after: 1, hook: func() {
		o.once.Do(func() {
			if _, err := o.Store.(*s3.Store).Upload(ctx, obj.Key, bytes.NewReader(o.newBody), s3.PutOptions{Overwrite: true}); err != nil {
				panic(err)
			}
		})
	}}
}

type hookReader struct {
	io.ReadCloser
	after, n int
	hook     func()
}

func (h *hookReader) Read(p []byte) (int, error) {
	n, err := h.ReadCloser.Read(p)
	h.n += n
	if h.n >= h.after && h.hook != nil {
		h.hook()
		h.hook = nil
	}
	return n, err
}

// overwritten is the outcome of restoring a key that another job force-overwrites mid-download.
type overwritten struct {
	got              cache.Restored
	err              error
	log              *bytes.Buffer
	oldTree, newTree string // listings
	restored         string // listing of what was restored
	store            *s3.Store
}

// restoreWhileOverwritten saves an old tree at k, then restores k while the object is replaced
// by a new tree's archive once the first bytes have been read.
func restoreWhileOverwritten(t *testing.T, srv *s3test.Server, k cachekey.Key) overwritten {
	t.Helper()
	oldTree, newTree := filepath.Join(t.TempDir(), "c"), filepath.Join(t.TempDir(), "c")
	makeTree(t, oldTree, 3*partSize)
	makeTree(t, newTree, 3*partSize)
	saver, store, _ := newCache(t, srv, []string{oldTree}, 1)
	_, err := saveOne(t, saver, k)
	must(t, err)
	var newArchive bytes.Buffer
	_, err = archive.Write(t.Context(), &newArchive, []string{newTree}, archive.Zstd, 0, nil)
	must(t, err)

	dst := filepath.Join(t.TempDir(), "c")
	r, _, log := newCache(t, srv, []string{dst}, 1)
	r.Store = &overwriter{Store: store, newBody: newArchive.Bytes()}
	o := overwritten{log: log, oldTree: listing(t, oldTree), newTree: listing(t, newTree), store: store}
	o.got, o.err = r.Restore(t.Context(), []cachekey.Key{k})
	if o.err == nil {
		o.restored = listing(t, dst)
	}
	return o
}

func TestRestoreRestartsWhenTheObjectChanges(t *testing.T) {
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		o := restoreWhileOverwritten(t, srv, key("changing/key.tar.zst"))
		must(t, o.err)
		if o.got.Restarts != 1 || !strings.Contains(o.log.String(), "Restarting restore of changing/key.tar.zst (1/3)") {
			t.Fatalf("restore = %+v; want one restart\n%s", o.got, o.log)
		}
		if o.restored != o.newTree {
			t.Fatalf("restored tree is not wholly the new one:\n%s", o.restored)
		}
	})
}

// overwriteAlways force-saves new content over the object every time a download starts.
type overwriteAlways struct {
	cache.Store
	t *testing.T
}

func (o *overwriteAlways) Open(ctx context.Context, obj s3.Object) io.ReadCloser {
	rc := o.Store.Open(ctx, obj)
	return &hookReader{ReadCloser: rc, after: 1, hook: func() {
		if _, err := o.Store.(*s3.Store).Upload(ctx, obj.Key, bytes.NewReader(bytes.Repeat([]byte{byte(len(obj.ETag))}, 3*partSize)), s3.PutOptions{Overwrite: true}); err != nil {
			o.t.Error(err)
		}
	}}
}

func TestRestoreGivesUpAfterDownloadRetries(t *testing.T) {
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		src := filepath.Join(t.TempDir(), "c")
		makeTree(t, src, 3*partSize)
		c, store, _ := newCache(t, srv, []string{src}, 1)
		k := key("flapping/key.tar.zst")
		_, err := saveOne(t, c, k)
		must(t, err)

		dst := filepath.Join(t.TempDir(), "c")
		makeTree(t, dst, 10)
		before := listing(t, dst)
		r, _, log := newCache(t, srv, []string{dst}, 1)
		r.Options.Restarts = 2
		r.Store = &overwriteAlways{Store: store, t: t}
		got, err := r.Restore(t.Context(), []cachekey.Key{k})
		if err == nil || !strings.Contains(err.Error(), "gave up after 2 restart(s) (download-retries)") || got.Hit != cache.Miss {
			t.Fatalf("restore = %+v, %v; want a miss that gave up after 2 restarts\n%s", got, err, log)
		}
		if after := listing(t, dst); after != before {
			t.Fatal("a restore that gave up changed the target")
		}
	})
}

// conflictOnce answers the first upload with 409 ConditionalRequestConflict.
type conflictOnce struct {
	cache.Store
	once sync.Once
}

func (c *conflictOnce) UploadEach(ctx context.Context, keys []string, r io.Reader, o s3.PutOptions) ([]s3.Result, []error) {
	var conflict bool
	c.once.Do(func() { conflict = true })
	if conflict {
		return []s3.Result{{}}, []error{fmt.Errorf("upload %s: %w", keys[0], s3.ErrConflict)}
	}
	return c.Store.UploadEach(ctx, keys, r, o)
}

func TestSaveRestartsAfterAConflict(t *testing.T) {
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		src := filepath.Join(t.TempDir(), "c")
		makeTree(t, src, 100)
		c, store, log := newCache(t, srv, []string{src}, 2)
		c.Store = &conflictOnce{Store: store}
		saved, err := saveOne(t, c, key("conflict/key.tar.zst"))
		if err != nil || !saved.Stored || !strings.Contains(log.String(), "starting the upload again") {
			t.Fatalf("save after a conflict: %+v, %v\n%s", saved, err, log)
		}
	})
}

// Against an endpoint that ignores If-Match, an object overwritten mid-download is still never
// restored as a mix of old and new: the restore notices and starts over.
func TestRestoreWithoutIfMatchNeverMixes(t *testing.T) {
	o := restoreWhileOverwritten(t, s3test.StartFake(t), key("fake/key.tar.zst"))
	must(t, o.err)
	if o.got.Restarts != 1 {
		t.Fatalf("restore = %+v; want one restart\n%s", o.got, o.log)
	}
	if o.restored != o.newTree {
		t.Fatalf("restored tree is not wholly the new one:\n%s", o.restored)
	}
}

// deleter removes the object after the first bytes of the first download: a lifecycle rule
// expiring the cache mid-restore.
type deleter struct {
	cache.Store
	store *s3.Store
	once  sync.Once
}

func (d *deleter) Open(ctx context.Context, obj s3.Object) io.ReadCloser {
	return &hookReader{ReadCloser: d.Store.Open(ctx, obj), after: 1, hook: func() {
		d.once.Do(func() {
			if err := d.store.Delete(ctx, obj.Key); err != nil {
				panic(err)
			}
		})
	}}
}

func TestRestoreOfAnObjectExpiredMidDownloadIsAMiss(t *testing.T) {
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		src := filepath.Join(t.TempDir(), "c")
		makeTree(t, src, 3*partSize)
		c, store, _ := newCache(t, srv, []string{src}, 1)
		k := key("expiring/key.tar.zst")
		_, err := saveOne(t, c, k)
		must(t, err)

		dst := filepath.Join(t.TempDir(), "c")
		r, _, log := newCache(t, srv, []string{dst}, 1)
		r.Store = &deleter{Store: store, store: store}
		got, err := r.Restore(t.Context(), []cachekey.Key{k})
		if err != nil || got.Hit != cache.Miss || !strings.Contains(log.String(), "Restarting restore") ||
			!strings.Contains(log.String(), "disappeared during the restore") {
			t.Fatalf("restore = %+v, %v; want a restart, then a miss\n%s", got, err, log)
		}
		if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("a missed restore created the target: %v", err)
		}
	})
}

// On a versioned bucket every range is pinned to the version seen at the start: an overwrite
// mid-download does not disturb the restore, which completes with the old tree whole.
func TestVersionedBucketRestoreIsPinnedToItsVersion(t *testing.T) {
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		_, err := srv.Client().PutBucketVersioning(t.Context(), &awss3.PutBucketVersioningInput{
			Bucket:                  aws.String(srv.Bucket),
			VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled},
		})
		must(t, err)
		k := key("versioned/key.tar.zst")
		o := restoreWhileOverwritten(t, srv, k)
		must(t, o.err)
		if obj, err := o.store.Head(t.Context(), k.Name); err != nil || obj.VersionID == "" {
			t.Fatalf("head on a versioned bucket: %+v, %v; want a version ID", obj, err)
		}
		if o.got.Restarts != 0 {
			t.Fatalf("restore = %+v; a pinned version needs no restart\n%s", o.got, o.log)
		}
		if o.restored != o.oldTree {
			t.Fatalf("restored tree is not wholly the old version:\n%s", o.restored)
		}
	})
}

// saveOne saves the cache at one key.
func saveOne(t *testing.T, c *cache.Cache, k cachekey.Key) (cache.Saved, error) {
	saved, err := c.Save(t.Context(), []cachekey.Key{k})
	if len(saved) != 1 {
		t.Errorf("Save of one key returned %d results", len(saved))
		return cache.Saved{}, err
	}
	return saved[0], err
}

// Saving under several levels walks and compresses once and uploads to each missing key.
func TestSaveUnderSeveralLevels(t *testing.T) {
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		for _, tc := range []struct {
			name   string
			random int
		}{{"single PUT", 1 << 10}, {"multipart", 2*partSize + 1}} {
			t.Run(tc.name, func(t *testing.T) {
				src := filepath.Join(t.TempDir(), "c")
				makeTree(t, src, tc.random)
				c, store, log := newCache(t, srv, []string{src}, 2)
				prefix := "levels/" + strings.ReplaceAll(tc.name, " ", "-")
				existing := cachekey.Key{Level: config.LevelStep, Name: prefix + "/step.tar.zst"}
				_, err := store.Upload(t.Context(), existing.Name, strings.NewReader("already here"), s3.PutOptions{})
				must(t, err)
				keys := []cachekey.Key{key(prefix + "/file.tar.zst"), existing,
					{Level: config.LevelBranch, Name: prefix + "/branch.tar.zst"}}
				saved, err := c.Save(t.Context(), keys)
				must(t, err)
				if !saved[0].Stored || saved[1].Stored || !saved[2].Stored {
					t.Fatalf("saved %+v; want file and branch stored, step left alone\n%s", saved, log)
				}
				if strings.Count(log.String(), "--- :s3: Saving cache (file, step, branch levels)") != 1 {
					t.Fatalf("want one log group for the save:\n%s", log)
				}
				for _, k := range []cachekey.Key{keys[0], keys[2]} {
					dst := filepath.Join(t.TempDir(), "c")
					r, _, _ := newCache(t, srv, []string{dst}, 2)
					got, err := r.Restore(t.Context(), []cachekey.Key{k})
					must(t, err)
					if got.Hit != cache.Exact || listing(t, dst) != listing(t, src) {
						t.Fatalf("restore of %s: %+v", k.Name, got)
					}
				}
				if obj, err := store.Head(t.Context(), existing.Name); err != nil || obj.Size != int64(len("already here")) {
					t.Fatalf("the existing object changed: %+v, %v", obj, err)
				}
				noUploadsLeft(t, srv, store)
			})
		}
	})
}

// An upload of one key that fails mid-stream does not stop the upload of the other key.
func TestOneFailedUploadDoesNotStopTheOthers(t *testing.T) {
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		src := filepath.Join(t.TempDir(), "c")
		makeTree(t, src, 3*partSize)
		p, err := s3test.NewProxy(srv.Endpoint)
		must(t, err)
		t.Cleanup(p.Close)
		o := srv.Options()
		o.Endpoint, o.Concurrency, o.PartSize = p.URL, 2, partSize
		store, err := s3.New(t.Context(), o)
		must(t, err)
		var log bytes.Buffer
		c := cache.New(store, buildkite.NewLog(&log), []string{src}, config.CacheOptions{Compression: archive.Zstd})
		keys := []cachekey.Key{key("onefails/a.tar.zst"), key("onefails/b.tar.zst")}
		p.Intercept(func(r *http.Request) (int, string, bool) { // a's second part
			return http.StatusForbidden, "AccessDenied", r.URL.Path == "/cache/"+keys[0].Name && r.URL.Query().Get("partNumber") == "2"
		})
		saved, err := c.Save(t.Context(), keys)
		if err == nil || !strings.Contains(err.Error(), "AccessDenied") || saved[0].Stored || !saved[1].Stored {
			t.Fatalf("saved %+v, %v; want a's failure reported and b stored\n%s", saved, err, &log)
		}
		noUploadsLeft(t, srv, store)
	})
}

func TestArchivesAboveMaxSizeAreNotSaved(t *testing.T) {
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		src := filepath.Join(t.TempDir(), "c")
		makeTree(t, src, 2*partSize)
		c, store, log := newCache(t, srv, []string{src}, 2)
		c.Options.MaxSize = partSize + 1 // past the first part: a multipart upload must be aborted
		k := key("toolarge/key.tar.zst")
		saved, err := saveOne(t, c, k)
		if err != nil || saved.Stored || !strings.Contains(log.String(), "larger than max-size") {
			t.Fatalf("save above max-size: %+v, %v\n%s", saved, err, log)
		}
		if _, err := store.Head(t.Context(), k.Name); !errors.Is(err, s3.ErrNotFound) {
			t.Fatalf("an archive above max-size was stored: %v", err)
		}
		noUploadsLeft(t, srv, store)
	})
}

// A save at several levels buffers each part once for all of them: what it allocates is bounded
// by concurrency × part size, not levels × concurrency × part size.
func TestSaveAtSeveralLevelsBuffersEachPartOnce(t *testing.T) {
	srv := s3test.StartT(t, s3test.Versitygw)
	src := filepath.Join(t.TempDir(), "c")
	makeTree(t, src, 8*partSize)
	const concurrency = 2
	c, store, log := newCache(t, srv, []string{src}, concurrency)
	c.Options.Compression = archive.None // the compressor's own buffers are not what is measured
	keys := []cachekey.Key{key("memory/file.tar"), {Level: config.LevelBranch, Name: "memory/branch.tar"},
		{Level: config.LevelPipeline, Name: "memory/pipeline.tar"}}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	saved, err := c.Save(t.Context(), keys)
	runtime.ReadMemStats(&after)
	must(t, err)
	for _, s := range saved {
		if !s.Stored {
			t.Fatalf("saved %+v\n%s", saved, log)
		}
	}
	allocated, limit := after.TotalAlloc-before.TotalAlloc, uint64(2*concurrency*partSize)
	t.Logf("a save of %s at %d levels allocated %s", buildkite.Bytes(saved[0].Size), len(keys), buildkite.Bytes(int64(allocated)))
	if allocated > limit {
		t.Fatalf("a save at %d levels allocated %s; want under %s: each part buffered once, at most concurrency (%d) at a time",
			len(keys), buildkite.Bytes(int64(allocated)), buildkite.Bytes(int64(limit)), concurrency)
	}
	noUploadsLeft(t, srv, store)
}
