package cache_test

import (
	"bytes"
	"context"
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

// warmHost is one agent host of the warm-restore tests: caches of its paths that record and
// trust stamps in its state directory, through a proxy that counts the GETs of archives.
type warmHost struct {
	t        *testing.T
	srv      *s3test.Server
	proxy    *s3test.Proxy
	stampDir string
}

func startWarm(t *testing.T) (*s3test.Server, *warmHost) {
	srv := s3test.StartT(t, s3test.Versitygw)
	p, err := s3test.NewProxy(srv.Endpoint)
	must(t, err)
	t.Cleanup(p.Close)
	return srv, &warmHost{t: t, srv: srv, proxy: p, stampDir: filepath.Join(t.TempDir(), "warm")}
}

func (h *warmHost) cache(paths ...string) (*cache.Cache, *bytes.Buffer) {
	h.t.Helper()
	o := h.srv.Options()
	o.Endpoint = h.proxy.URL
	store, err := s3.New(h.t.Context(), o)
	must(h.t, err)
	var log bytes.Buffer
	return cache.New(store, buildkite.NewLog(&log), paths,
		config.CacheOptions{Compression: archive.Zstd, Restarts: 3, StampDir: h.stampDir}), &log
}

// agedTree makes a tree in a fresh node_modules, old enough for a save to stamp it (age), and
// returns it with its cache.
func (h *warmHost) agedTree(t *testing.T) (string, *cache.Cache, *bytes.Buffer) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "node_modules")
	makeTree(t, dir, 64<<10)
	age()
	c, log := h.cache(dir)
	return dir, c, log
}

// gets counts the archive downloads (GETs of objects) the host made so far.
func (h *warmHost) gets() int {
	n := 0
	for _, r := range h.proxy.Requests() {
		if r.Method == "GET" && strings.Count(r.Path, "/") > 1 {
			n++
		}
	}
	return n
}

// restore restores candidates and says whether it was warm: nothing downloaded, no GET.
func (h *warmHost) restore(c *cache.Cache, log *bytes.Buffer, candidates ...cachekey.Key) cache.Restored {
	h.t.Helper()
	before := h.gets()
	log.Reset()
	r, err := c.Restore(h.t.Context(), candidates)
	if err != nil {
		h.t.Fatalf("restore: %v\n%s", err, log)
	}
	got := h.gets() - before
	if r.Warm != (got == 0) || r.Warm != (r.Size == 0) {
		h.t.Fatalf("restore %+v made %d GETs\n%s", r, got, log)
	}
	return r
}

// A repeat restore into paths untouched since the last restore downloads nothing and is the
// same hit; any change to them makes the next restore a real one, which puts the key's tree back.
func TestWarmRestore(t *testing.T) {
	srv, h := startWarm(t)
	src := filepath.Join(t.TempDir(), "node_modules")
	makeTree(t, src, 64<<10)
	saver, _, _ := newCache(t, srv, []string{src}, 2)
	k := key("warm/exact.tar.zst")
	_, err := saveOne(t, saver, k)
	must(t, err)
	want := listing(t, src)

	dst := filepath.Join(t.TempDir(), "node_modules")
	c, log := h.cache(dst)
	if r := h.restore(c, log, k); r.Warm || r.Hit != cache.Exact {
		t.Fatalf("first restore %+v, want a real exact hit\n%s", r, log)
	}
	r := h.restore(c, log, k)
	if !r.Warm || r.Hit != cache.Exact || r.Key != k || r.Stats.Entries != 7 {
		t.Fatalf("repeat restore %+v, want a warm exact hit of %s with 7 entries\n%s", r, k.Name, log)
	}
	line := "Cache hit (exact): " + dst + " already holds " + k.Name + ", untouched since "
	if !strings.Contains(log.String(), line) || !strings.Contains(log.String(), "; nothing downloaded") {
		t.Fatalf("log lacks %q:\n%s", line, log)
	}
	if r := h.restore(c, log, key("warm/none.tar.zst"), k); !r.Warm || r.Hit != cache.Fallback {
		t.Fatalf("restore falling back to %s: %+v, want a warm fallback\n%s", k.Name, r, log)
	}

	for _, tc := range []struct {
		name   string
		change func(t *testing.T)
	}{
		{"a file's content, same size and mtime", func(t *testing.T) {
			p := filepath.Join(dst, "a.txt")
			fi, err := os.Stat(p)
			must(t, err)
			must(t, os.WriteFile(p, []byte("HELLO"), 0o644))
			must(t, os.Chtimes(p, fi.ModTime(), fi.ModTime()))
		}},
		{"a file's mode", func(t *testing.T) { must(t, os.Chmod(filepath.Join(dst, "sub", "run.sh"), 0o700)) }},
		{"an added file", func(t *testing.T) { must(t, os.WriteFile(filepath.Join(dst, "sub", "new"), nil, 0o644)) }},
		{"a removed file", func(t *testing.T) { must(t, os.Remove(filepath.Join(dst, "a.txt"))) }},
		{"an added empty directory", func(t *testing.T) { must(t, os.Mkdir(filepath.Join(dst, "sub", "empty"), 0o755)) }},
		{"a symlink's target", func(t *testing.T) {
			p := filepath.Join(dst, "sub", "link")
			must(t, os.Remove(p))
			must(t, os.Symlink("../b.txt", p))
		}},
		{"a touched directory", func(t *testing.T) {
			now := time.Now()
			must(t, os.Chtimes(filepath.Join(dst, "sub", "deep"), now, now))
		}},
		{"the target removed", func(t *testing.T) { must(t, os.RemoveAll(dst)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.change(t)
			if r := h.restore(c, log, k); r.Warm || r.Hit != cache.Exact {
				t.Fatalf("restore after the change: %+v, want a real exact hit\n%s", r, log)
			}
			if got := listing(t, dst); got != want {
				t.Fatalf("restored:\n%s\nwant:\n%s", got, want)
			}
			if r := h.restore(c, log, k); !r.Warm {
				t.Fatalf("the restore after it: %+v, want warm\n%s", r, log)
			}
		})
	}
}

// age waits until every change made so far is older than the window of change times a save
// refuses (a change time is never ahead of the clock), so that the next save stamps the paths.
func age() { time.Sleep(cache.CtimeWindow) }

// A save stamps the paths it stored: the next restore of the key on the same host downloads
// nothing. A stamp is trusted for its own key and ETag only, and a corrupt one is no stamp.
func TestWarmAfterSave(t *testing.T) {
	srv, h := startWarm(t)
	dir := filepath.Join(t.TempDir(), "node_modules")
	makeTree(t, dir, 64<<10)
	age()
	want := listing(t, dir)
	c, log := h.cache(dir)
	k := key("warm/saved.tar.zst")
	if s, err := saveOne(t, c, k); err != nil || !s.Stored || s.ETag == "" {
		t.Fatalf("save: %+v, %v\n%s", s, err, log)
	}
	if r := h.restore(c, log, k); !r.Warm || r.Hit != cache.Exact {
		t.Fatalf("restore after a save on the same host: %+v, want warm\n%s", r, log)
	}
	if listing(t, dir) != want {
		t.Fatal("a warm restore changed the tree")
	}

	// The same tree under another key: not what the stamp names.
	other := key("warm/other.tar.zst")
	elsewhere := filepath.Join(t.TempDir(), "node_modules")
	makeTree(t, elsewhere, 32<<10)
	saver, _, _ := newCache(t, srv, []string{elsewhere}, 2)
	_, err := saveOne(t, saver, other)
	must(t, err)
	if r := h.restore(c, log, other); r.Warm {
		t.Fatalf("restore of another key: %+v, want a real restore\n%s", r, log)
	}
	if listing(t, dir) != listing(t, elsewhere) {
		t.Fatal("the other key's tree was not restored")
	}
	must(t, os.RemoveAll(dir))
	makeTree(t, dir, 64<<10)
	want = listing(t, dir)
	if s, err := saveOne(t, c, k); err != nil || s.Stored {
		t.Fatalf("save of an existing key: %+v, %v", s, err)
	}
	if r := h.restore(c, log, k); r.Warm {
		t.Fatalf("restore after a save that stored nothing: %+v, want a real restore\n%s", r, log)
	}

	// The same key, another object (a forced save from another host): another ETag.
	saver.Options.Force = true
	_, err = saveOne(t, saver, k)
	must(t, err)
	if r := h.restore(c, log, k); r.Warm {
		t.Fatalf("restore of a key saved again elsewhere: %+v, want a real restore\n%s", r, log)
	}
	if listing(t, dir) != listing(t, elsewhere) {
		t.Fatal("the new object's tree was not restored")
	}
	if listing(t, dir) == want {
		t.Fatal("the test's two trees are the same")
	}

	// A forced save on this host stamps anew.
	c.Options.Force = true
	must(t, os.RemoveAll(dir))
	makeTree(t, dir, 16<<10)
	age()
	if s, err := saveOne(t, c, k); err != nil || !s.Stored {
		t.Fatalf("forced save: %+v, %v", s, err)
	}
	if r := h.restore(c, log, k); !r.Warm {
		t.Fatalf("restore after a forced save: %+v, want warm\n%s", r, log)
	}

	// A corrupt stamp is none: a real restore, no error.
	stamps, err := filepath.Glob(filepath.Join(h.stampDir, "*.json"))
	must(t, err)
	if len(stamps) != 1 {
		t.Fatalf("stamps %q, want one", stamps)
	}
	for _, corrupt := range []string{"{", `{"version":1,"paths":["` + dir + `"],"objects":[{"key":"` + k.Name + `"}]}`, ""} {
		must(t, os.WriteFile(stamps[0], []byte(corrupt), 0o600))
		if r := h.restore(c, log, k); r.Warm || r.Hit != cache.Exact {
			t.Fatalf("restore with the stamp %q: %+v, want a real exact hit\n%s", corrupt, r, log)
		}
	}
}

// changingStore changes the paths when the upload first reads the archive: the archive is
// being written then (it cannot end before the upload has read it all) and, uncompressed, is
// at its first entry.
type changingStore struct {
	cache.Store
	change func() error
	once   sync.Once
	err    error
}

func (s *changingStore) UploadEach(ctx context.Context, keys []string, r io.Reader, o s3.PutOptions) ([]s3.Result, []error) {
	return s.Store.UploadEach(ctx, keys, readerFunc(func(p []byte) (int, error) {
		s.once.Do(func() { s.err = s.change() })
		return r.Read(p)
	}), o)
}

type readerFunc func(p []byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// A save whose paths change while its archive reads them stores the archive, and the next
// restore is a real one: the save records no stamp (a change before the archive read the entry)
// or one of the tree as the archive read it, which the restore's walk does not find (a change
// after). With no change, the same save stamps and the next restore is warm.
func TestSaveOfAChangingTreeIsNotWarm(t *testing.T) {
	_, h := startWarm(t)
	for i, tc := range []struct {
		name   string
		change func(dir, older string) error
	}{
		{"nothing", nil},
		{"a file's content, same size and mtime", func(dir, _ string) error {
			p := filepath.Join(dir, "a.txt")
			fi, err := os.Stat(p)
			if err == nil {
				err = os.WriteFile(p, []byte("HELLO"), 0o644)
			}
			if err == nil {
				err = os.Chtimes(p, fi.ModTime(), fi.ModTime())
			}
			return err
		}},
		{"an added file", func(dir, _ string) error { return os.WriteFile(filepath.Join(dir, "sub", "deep", "new"), nil, 0o644) }},
		{"a removed file", func(dir, _ string) error { return os.Remove(filepath.Join(dir, "sub", "deep", "blob.bin")) }},
		{"a renamed file", func(dir, _ string) error {
			return os.Rename(filepath.Join(dir, "sub", "deep", "blob.bin"), filepath.Join(dir, "sub", "deep", "blob2.bin"))
		}},
		{"a file moved in from outside", func(dir, older string) error {
			return os.Rename(filepath.Join(older, "a.txt"), filepath.Join(dir, "sub", "deep", "a.txt"))
		}},
		{"a chmod", func(dir, _ string) error { return os.Chmod(filepath.Join(dir, "sub", "run.sh"), 0o700) }},
		{"the path replaced by an older tree", func(dir, older string) error {
			err := os.Rename(dir, dir+".old")
			if err == nil {
				err = os.Rename(older, dir)
			}
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "node_modules")
			older := filepath.Join(t.TempDir(), "older")
			makeTree(t, older, 64<<10)
			makeTree(t, dir, 64<<10)
			age()
			c, log := h.cache(dir)
			c.Options.Compression = archive.None
			store := &changingStore{Store: c.Store, change: func() error { return nil }}
			if tc.change != nil {
				store.change = func() error { return tc.change(dir, older) }
			}
			c.Store = store
			k := key(fmt.Sprintf("warm/changing-%d.tar", i))
			if s, err := saveOne(t, c, k); err != nil || !s.Stored {
				t.Fatalf("save: %+v, %v\n%s", s, err, log)
			}
			must(t, store.err)
			refused := "Not recording " + dir + " for warm restores"
			if tc.change == nil && strings.Contains(log.String(), refused) {
				t.Fatalf("the save of an unchanged tree says %q\n%s", refused, log)
			}
			if r := h.restore(c, log, k); r.Warm != (tc.change == nil) {
				t.Fatalf("restore after the save: %+v, want warm %v\n%s", r, tc.change == nil, log)
			}
		})
	}
}

// conflictingStore answers the first upload with 409 ConditionalRequestConflict, as a
// concurrent writer's conditional create can: having read the whole archive (drain) or none of
// it. between, if set, runs once the first answer is given, before the save writes its next
// archive.
type conflictingStore struct {
	cache.Store
	drain   bool
	between func() error
	uploads int
	err     error
}

func (s *conflictingStore) UploadEach(ctx context.Context, keys []string, r io.Reader, o s3.PutOptions) ([]s3.Result, []error) {
	if s.uploads++; s.uploads > 1 {
		return s.Store.UploadEach(ctx, keys, r, o)
	}
	if s.drain {
		if _, err := io.Copy(io.Discard, r); err != nil {
			s.err = err
		}
	}
	if s.between != nil && s.err == nil {
		s.err = s.between()
	}
	return []s3.Result{{}}, []error{fmt.Errorf("upload %s: %w", keys[0], s3.ErrConflict)}
}

// A save restarted after a conflict writes a second archive; its stamp names the object that
// archive stored. It is trusted only if every archive the save wrote read the same tree: the
// next restore is warm when nothing changed, whether the first archive was read to its end or
// abandoned, and real when the tree changed between the two archives, which the save says (the
// change times inside the save would refuse the stamp too; TestEveryArchiveOfASaveMustReadOneTree
// checks a change that leaves none).
func TestWarmAfterASaveRestartedByAConflict(t *testing.T) {
	_, h := startWarm(t)
	for i, tc := range []struct {
		name    string
		drain   bool
		between func(dir string) error
		warm    bool
	}{
		{"first archive read, nothing changed", true, nil, true},
		{"first archive abandoned, nothing changed", false, nil, true},
		{"first archive read, a file added before the second", true, func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "sub", "deep", "new"), nil, 0o644)
		}, false},
		{"first archive read, a file's content changed before the second", true, func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "a.txt"), []byte("HELLO"), 0o644)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, c, log := h.agedTree(t)
			store := &conflictingStore{Store: c.Store, drain: tc.drain}
			if tc.between != nil {
				store.between = func() error { return tc.between(dir) }
			}
			c.Store = store
			k := key(fmt.Sprintf("warm/conflict-%d.tar.zst", i))
			if s, err := saveOne(t, c, k); err != nil || !s.Stored || store.uploads != 2 {
				t.Fatalf("save: %+v, %v, %d uploads; want one stored after a restart\n%s", s, err, store.uploads, log)
			}
			must(t, store.err)
			if refused := "the archives before and after a restart read different trees"; !tc.warm && !strings.Contains(log.String(), refused) {
				t.Fatalf("the save does not say %q\n%s", refused, log)
			}
			want := listing(t, dir)
			if r := h.restore(c, log, k); r.Warm != tc.warm || r.Hit != cache.Exact {
				t.Fatalf("restore after the save: %+v, want an exact hit, warm %t\n%s", r, tc.warm, log)
			}
			if got := listing(t, dir); got != want {
				t.Fatalf("the paths after the restore:\n%s\nwant what the second archive stored:\n%s", got, want)
			}
		})
	}
}

// Without a stamp directory nothing is recorded and every restore is a real one.
func TestNoStampDirNoWarmRestores(t *testing.T) {
	srv := s3test.StartT(t, s3test.Versitygw)
	dir := filepath.Join(t.TempDir(), "c")
	makeTree(t, dir, 0)
	c, _, log := newCache(t, srv, []string{dir}, 2)
	k := key("warm/nostamps.tar.zst")
	_, err := saveOne(t, c, k)
	must(t, err)
	for range 2 {
		r, err := c.Restore(t.Context(), []cachekey.Key{k})
		must(t, err)
		if r.Warm || r.Size == 0 {
			t.Fatalf("restore without stamps: %+v\n%s", r, log)
		}
	}
}

// vanishingStore finds the object at key once; its download fails, and then it is gone, as if
// it expired meanwhile. during, if set, runs as the download begins.
type vanishingStore struct {
	cache.Store
	key    string
	heads  int
	during func()
}

func (s *vanishingStore) Head(ctx context.Context, key string) (s3.Object, error) {
	if key != s.key {
		return s.Store.Head(ctx, key)
	}
	if s.heads++; s.heads > 1 {
		return s3.Object{}, s3.ErrNotFound
	}
	return s.Store.Head(ctx, key)
}

func (s *vanishingStore) Open(ctx context.Context, obj s3.Object) io.ReadCloser {
	if obj.Key != s.key {
		return s.Store.Open(ctx, obj)
	}
	if s.during != nil {
		s.during()
	}
	return io.NopCloser(readerFunc(func([]byte) (int, error) { return 0, s3.ErrNotFound }))
}

// A restore that finds an object the stamp does not name tries to download it. If that object
// vanishes, the next candidate, which the stamp names, is checked against the paths as they are
// then: warm if they are untouched, and a real restore if they changed meanwhile.
func TestWarmAfterTheFirstHitVanished(t *testing.T) {
	srv, h := startWarm(t)
	elsewhere := filepath.Join(t.TempDir(), "node_modules")
	makeTree(t, elsewhere, 32<<10)
	saver, _, _ := newCache(t, srv, []string{elsewhere}, 2)
	gone := key("warm/gone.tar.zst")
	_, err := saveOne(t, saver, gone)
	must(t, err)

	for i, tc := range []struct {
		name   string
		change func(dir string)
		warm   bool
	}{
		{"untouched", nil, true},
		{"changed during the download", func(dir string) {
			must(t, os.WriteFile(filepath.Join(dir, "sub", "new"), nil, 0o644))
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, c, log := h.agedTree(t)
			k := key(fmt.Sprintf("warm/stamped-%d.tar.zst", i))
			if s, err := saveOne(t, c, k); err != nil || !s.Stored {
				t.Fatalf("save: %+v, %v\n%s", s, err, log)
			}
			want := listing(t, dir)
			vs := &vanishingStore{Store: c.Store, key: gone.Name}
			if tc.change != nil {
				vs.during = func() { tc.change(dir) }
			}
			c.Store = vs
			r := h.restore(c, log, gone, k)
			if r.Warm != tc.warm || r.Hit != cache.Fallback || r.Key != k {
				t.Fatalf("restore: %+v, want a fallback to %s, warm %t\n%s", r, k.Name, tc.warm, log)
			}
			if !strings.Contains(log.String(), gone.Name+" disappeared during the restore") {
				t.Fatalf("the restore did not try %s first:\n%s", gone.Name, log)
			}
			if listing(t, dir) != want {
				t.Fatal("the paths do not hold the stamped tree")
			}
		})
	}
}
