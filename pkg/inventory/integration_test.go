package inventory_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/s3test"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/archive"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/buildkite"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cache"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cachekey"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/inventory"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/s3"
)

const prefix = "cache"

// fixture is a bucket holding the caches of three pipelines of one organisation, saved in three
// waves a second apart (docs first, then api, then web: LastModified has one-second resolution),
// each at several levels and branches, shared and isolated; the organisation's all level; and
// one object that is not a cache.
type fixture struct {
	srv    *s3test.Server
	store  *s3.Store
	caches []inventory.Cache // what Load must find: the caches and the unknown object
}

// spec is one cache of a pipeline in the fixture.
type spec struct {
	level  config.Level
	branch string
	ns     string
}

var specs = []spec{
	{config.LevelPipeline, "main", ""},
	{config.LevelBranch, "main", ""},
	{config.LevelBranch, "feature/x", ""},
	{config.LevelStep, "main", ""},
	{config.LevelFile, "main", ""},
	{config.LevelFile, "feature/x", cachekey.BranchNamespace("feature/x")},
	{config.LevelPipeline, "feature/x", cachekey.BranchNamespace("feature/x")},
	{config.LevelPipeline, "pr", cachekey.PullRequestNamespace("7")},
}

var pipelines = []string{"docs", "api", "web"}

func newFixture(t *testing.T, srv *s3test.Server) *fixture {
	t.Helper()
	store, err := srv.Store(t.Context(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{srv: srv, store: store}
	size := 100
	put := func(key string, c inventory.Cache) {
		size += 10 // every object a different size, so that totals are exact
		c.Key, c.Size = key, int64(size)
		if _, err := srv.Client().PutObject(t.Context(), &awss3.PutObjectInput{Bucket: &srv.Bucket, Key: &key,
			Body: bytes.NewReader(make([]byte, size))}); err != nil {
			t.Fatal(err)
		}
		f.caches = append(f.caches, c)
	}
	for wave, pipeline := range pipelines {
		if wave > 0 {
			time.Sleep(1100 * time.Millisecond)
		}
		for _, sp := range specs {
			in := cachekey.Inputs{Build: cachekey.Build{Organization: "acme", Pipeline: pipeline, Branch: sp.branch,
				Step: "test", Namespace: sp.ns}, Paths: []string{"node_modules"}, Compression: archive.Zstd,
				OS: "linux", Arch: "amd64", ManifestHash: strings.Repeat("0", 64)}
			k, err := cachekey.For(sp.level, prefix, in)
			if err != nil {
				t.Fatal(err)
			}
			c := inventory.Cache{Org: "acme", Pipeline: pipeline, Level: string(sp.level), Namespace: sp.ns}
			switch sp.level {
			case config.LevelBranch:
				c.Branch = cachekey.Slug(sp.branch)
			case config.LevelStep:
				c.Step = "test"
			case config.LevelFile:
				c.Family = filepath.Base(filepath.Dir(k.Name))
			}
			put(k.Name, c)
		}
		if wave == 0 {
			put(prefix+"/acme/all/"+strings.Repeat("a", 32)+".tar.zst", inventory.Cache{Org: "acme", Level: "all"})
			put(prefix+"/acme/notes.txt", inventory.Cache{Level: inventory.Unknown})
		}
	}
	return f
}

// keys returns the keys of the caches that pass keep.
func (f *fixture) keys(keep func(inventory.Cache) bool) []string {
	var out []string
	for _, c := range f.caches {
		if keep(c) {
			out = append(out, c.Key)
		}
	}
	slices.Sort(out)
	return out
}

// listed returns every key in the bucket.
func (f *fixture) listed(t *testing.T) []string {
	t.Helper()
	var keys []string
	if err := f.store.List(t.Context(), "", func(page []s3.Entry) error {
		for _, e := range page {
			keys = append(keys, e.Key)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

// command returns the command with the agent environment pointing at the fixture's server.
func (f *fixture) command(t *testing.T, now func() time.Time) (*inventory.Command, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	env := append(f.srv.Env(), config.Prefix+"PREFIX="+prefix)
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v) // the SDK reads the credentials from the process environment
	}
	var out, errs bytes.Buffer
	return &inventory.Command{Stdout: &out, Stderr: &errs, Environ: env, Now: now}, &out, &errs
}

// mark writes a last-use marker of key, named for the hour of at (its LastModified is now).
func (f *fixture) mark(t *testing.T, key string, at time.Time) {
	t.Helper()
	if err := f.store.Mark(t.Context(), cachekey.UsedMarker(prefix, key, at)); err != nil {
		t.Fatal(err)
	}
}

func decode(t *testing.T, out []byte) []inventory.Cache {
	t.Helper()
	var cs []inventory.Cache
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var c inventory.Cache
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		cs = append(cs, c)
	}
	return cs
}

// ls finds every cache and says what its name holds; each filter selects exactly its caches,
// and the totals per pipeline and level add up to the bytes stored.
func TestLsFiltersAndTotals(t *testing.T) {
	s3test.Each(t, testLsFiltersAndTotals)
}

func testLsFiltersAndTotals(t *testing.T, srv *s3test.Server) {
	f := newFixture(t, srv)
	used := f.caches[1].Key // the docs pipeline's main branch cache
	f.mark(t, used, time.Now())
	isFeature := func(c inventory.Cache) bool {
		return c.Branch == "feature-x" || c.Namespace == cachekey.BranchNamespace("feature/x")
	}
	for _, tc := range []struct {
		args []string
		want func(inventory.Cache) bool
	}{
		{nil, func(inventory.Cache) bool { return true }},
		{[]string{"--pipeline", "web"}, func(c inventory.Cache) bool { return c.Pipeline == "web" }},
		{[]string{"--org", "acme", "--level", "branch"}, func(c inventory.Cache) bool { return c.Level == "branch" }},
		{[]string{"--branch", "feature/x"}, isFeature},
		{[]string{"--branch", "feature/x", "--pipeline", "api", "--level", "file"},
			func(c inventory.Cache) bool { return isFeature(c) && c.Pipeline == "api" && c.Level == "file" }},
		{[]string{"--level", "all"}, func(c inventory.Cache) bool { return c.Level == "all" }},
		{[]string{"--level", "unknown"}, func(c inventory.Cache) bool { return c.Level == inventory.Unknown }},
		{[]string{"--org", "other"}, func(inventory.Cache) bool { return false }},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cmd, out, errs := f.command(t, nil)
			if st := cmd.Main(t.Context(), append([]string{"ls", "--json"}, tc.args...)); st != 0 {
				t.Fatalf("exit %d: %s", st, errs)
			}
			got := decode(t, out.Bytes())
			var keys []string
			for _, c := range got {
				keys = append(keys, c.Key)
				want := f.caches[slices.IndexFunc(f.caches, func(w inventory.Cache) bool { return w.Key == c.Key })]
				if c.Org != want.Org || c.Pipeline != want.Pipeline || c.Level != want.Level || c.Branch != want.Branch ||
					c.Step != want.Step || c.Family != want.Family || c.Namespace != want.Namespace || c.Size != want.Size ||
					c.Saved.IsZero() || (c.Key == used) == c.Used.IsZero() {
					t.Errorf("listed %+v, want %+v (last used only for %s)", c, want, used)
				}
			}
			if want := f.keys(tc.want); !slices.Equal(keys, want) {
				t.Fatalf("listed\n%s\nwant\n%s", strings.Join(keys, "\n"), strings.Join(want, "\n"))
			}
		})
	}

	t.Run("table and totals", func(t *testing.T) {
		cmd, out, errs := f.command(t, nil)
		if st := cmd.Main(t.Context(), []string{"ls", "--sort", "size"}); st != 0 {
			t.Fatalf("exit %d: %s", st, errs)
		}
		var total int64
		sums := map[string]int64{}
		counts := map[string]int{}
		for _, c := range f.caches {
			total += c.Size
			k := fmt.Sprintf("%s %s %s", c.Org, c.Pipeline, c.Level)
			sums[k] += c.Size
			counts[k]++
		}
		inv, err := inventory.Load(t.Context(), f.store, prefix)
		if err != nil {
			t.Fatal(err)
		}
		totals := inventory.Totals(inv.Caches)
		if len(totals) != len(sums) {
			t.Fatalf("%d totals, want %d: %+v", len(totals), len(sums), totals)
		}
		for _, tot := range totals {
			k := fmt.Sprintf("%s %s %s", tot.Org, tot.Pipeline, tot.Level)
			if tot.Size != sums[k] || tot.Count != counts[k] {
				t.Errorf("total of %s: %d caches, %d bytes; want %d, %d", k, tot.Count, tot.Size, counts[k], sums[k])
			}
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if last := strings.Fields(lines[len(lines)-1]); last[0] != "total" || last[1] != fmt.Sprint(len(f.caches)) ||
			strings.Join(last[2:], " ") != buildkite.Bytes(total) {
			t.Fatalf("last line %q, want the total of %d objects, %s", lines[len(lines)-1], len(f.caches), buildkite.Bytes(total))
		}
		// Largest first.
		first := strings.Fields(lines[1])
		if first[len(first)-1] != f.caches[len(f.caches)-1].Key {
			t.Fatalf("first row %q, want the largest object %s", lines[1], f.caches[len(f.caches)-1].Key)
		}
	})
}

// A dry run prints the plan and deletes nothing.
func TestGCDryRunDeletesNothing(t *testing.T) {
	f := newFixture(t, s3test.StartT(t, s3test.Versitygw))
	f.mark(t, f.caches[0].Key, time.Now())
	f.mark(t, prefix+"/acme/gone/pipeline/"+strings.Repeat("b", 32)+".tar", time.Now())
	before := f.listed(t)
	later := time.Now().Add(48 * time.Hour)
	cmd, out, errs := f.command(t, func() time.Time { return later })
	if st := cmd.Main(t.Context(), []string{"gc", "--dry-run", "--max-size", "1", "--keep-recent", "0"}); st != 0 {
		t.Fatalf("exit %d: %s", st, errs)
	}
	if after := f.listed(t); !slices.Equal(before, after) {
		t.Fatalf("a dry run changed the bucket:\nbefore %q\nafter  %q", before, after)
	}
	var freed int64
	for _, c := range f.caches {
		if c.Level == inventory.Unknown {
			continue
		}
		freed += c.Size
		if !strings.Contains(out.String(), "would delete "+c.Key+" (") {
			t.Errorf("the plan does not name %s", c.Key)
		}
	}
	for _, want := range []string{"would delete marker " + prefix + "/.s3-cache-used/acme/gone/",
		fmt.Sprintf("freeing %s (%d bytes)", buildkite.Bytes(freed), freed), "1 object(s) that are not caches left alone"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the plan lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(out.String())
	}
}

// gc --max-size deletes the least recently used first (a restore's marker counts, not the save),
// frees at least what it says, removes superseded and orphan markers and aborts stale uploads.
func TestGCMaxSizeKeepsTheMostRecentlyUsed(t *testing.T) {
	s3test.Each(t, testGCMaxSizeKeepsTheMostRecentlyUsed)
}

func testGCMaxSizeKeepsTheMostRecentlyUsed(t *testing.T, srv *s3test.Server) {
	f := newFixture(t, srv)
	oldest := f.caches[0].Key // saved first, but restored last: it must survive
	api := f.caches[len(specs)+2].Key
	orphan := prefix + "/acme/gone/pipeline/" + strings.Repeat("b", 32) + ".tar"
	time.Sleep(1100 * time.Millisecond)
	f.mark(t, api, time.Now().Add(-2*time.Hour))
	f.mark(t, api, time.Now())
	f.mark(t, orphan, time.Now())
	time.Sleep(1100 * time.Millisecond)
	f.mark(t, oldest, time.Now())
	up, err := f.srv.Client().CreateMultipartUpload(t.Context(), &awss3.CreateMultipartUploadInput{Bucket: &f.srv.Bucket,
		Key: aws.String(prefix + "/acme/web/pipeline/" + strings.Repeat("c", 32) + ".tar.zst")})
	if err != nil {
		t.Fatal(err)
	}

	before, err := inventory.Load(t.Context(), f.store, prefix)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, c := range before.Caches {
		if c.Known() {
			total += c.Size
		}
	}
	budget := total / 2
	later := time.Now().Add(25 * time.Hour) // past keep-recent, and the upload is over a day old
	var out bytes.Buffer
	plan, err := inventory.GC(t.Context(), f.store, prefix, inventory.GCOptions{MaxSize: budget, KeepRecent: time.Hour,
		Now: func() time.Time { return later }}, &out)
	if err != nil {
		t.Fatal(err)
	}
	after, err := inventory.Load(t.Context(), f.store, prefix)
	if err != nil {
		t.Fatal(err)
	}
	var left int64
	for _, c := range after.Caches {
		if c.Known() {
			left += c.Size
		}
	}
	if left > budget || left != plan.After || total-left != plan.Freed || plan.Freed < total-budget || len(plan.Caches) == 0 {
		t.Fatalf("%d bytes left of %d (budget %d); the plan said %d left, %d freed\n%s", left, total, budget, plan.After, plan.Freed, out.String())
	}
	var newestDeleted time.Time
	for _, d := range plan.Caches {
		if slices.ContainsFunc(after.Caches, func(c inventory.Cache) bool { return c.Key == d.Key }) {
			t.Fatalf("%s is still there after gc deleted it", d.Key)
		}
		if d.LastUse().After(newestDeleted) {
			newestDeleted = d.LastUse()
		}
	}
	for _, c := range after.Caches {
		if c.Known() && c.LastUse().Before(newestDeleted) {
			t.Errorf("kept %s, last used %v, but deleted one used at %v", c.Key, c.LastUse(), newestDeleted)
		}
	}
	keptOldest := slices.IndexFunc(after.Caches, func(c inventory.Cache) bool { return c.Key == oldest })
	if keptOldest < 0 || after.Caches[keptOldest].Used.IsZero() {
		t.Fatalf("deleted %s, the most recently restored cache, or its marker\n%s", oldest, out.String())
	}
	if !slices.ContainsFunc(after.Caches, func(c inventory.Cache) bool { return c.Level == inventory.Unknown }) {
		t.Fatalf("gc deleted an object that is not a cache")
	}
	// Markers: the orphan is gone, and of api's two only the newest is left (or none, with api).
	markers := 0
	for _, k := range f.listed(t) {
		if strings.HasPrefix(k, prefix+"/"+cachekey.UsedFolder+"/") {
			markers++
			if strings.Contains(k, "/gone/") {
				t.Errorf("orphan marker %s left", k)
			}
		}
	}
	wantMarkers := 1 // oldest's
	if slices.ContainsFunc(after.Caches, func(c inventory.Cache) bool { return c.Key == api }) {
		wantMarkers++
	}
	if markers != wantMarkers {
		t.Errorf("%d marker(s) left, want %d\n%s", markers, wantMarkers, out.String())
	}
	if srv.Kind == s3test.MinIO {
		// MinIO lists the multipart uploads of one exact key only, so gc finds none below a prefix
		// there: the lifecycle rule AbortIncompleteMultipartUpload stays the only sweep.
		ups, err := f.store.Uploads(t.Context(), aws.ToString(up.Key))
		if err != nil || len(ups) != 1 || len(plan.Uploads) != 0 {
			t.Fatalf("MinIO: uploads of the key %+v (%v); plan aborted %+v", ups, err, plan.Uploads)
		}
		return
	}
	ups, err := f.store.Uploads(t.Context(), prefix+"/")
	if err != nil || len(ups) != 0 || len(plan.Uploads) != 1 || plan.Uploads[0].ID != aws.ToString(up.UploadId) {
		t.Fatalf("uploads left %+v (%v); plan aborted %+v", ups, err, plan.Uploads)
	}
}

// A cache used within keep-recent survives any budget; the others go.
func TestGCKeepRecentSurvivesAnyBudget(t *testing.T) {
	f := newFixture(t, s3test.StartT(t, s3test.Versitygw))
	time.Sleep(1100 * time.Millisecond)
	recent := f.caches[0].Key
	f.mark(t, recent, time.Now())
	inv, err := inventory.Load(t.Context(), f.store, prefix)
	if err != nil {
		t.Fatal(err)
	}
	marked := inv.Caches[slices.IndexFunc(inv.Caches, func(c inventory.Cache) bool { return c.Key == recent })].Used

	// Everything was saved or used within the hour: nothing goes.
	var out bytes.Buffer
	plan, err := inventory.GC(t.Context(), f.store, prefix, inventory.GCOptions{MaxSize: 1, UnusedFor: time.Nanosecond,
		KeepRecent: time.Hour, Now: func() time.Time { return marked.Add(time.Minute) }}, &out)
	if err != nil || len(plan.Caches) != 0 {
		t.Fatalf("deleted %d cache(s) used within keep-recent (%v)\n%s", len(plan.Caches), err, out.String())
	}
	// An hour later only the cache restored last is within keep-recent (the saves are a second older).
	later := marked.Add(time.Hour)
	plan, err = inventory.GC(t.Context(), f.store, prefix, inventory.GCOptions{MaxSize: 1,
		KeepRecent: time.Hour + 500*time.Millisecond, Now: func() time.Time { return later }}, &out)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, k := range f.listed(t) {
		if !strings.Contains(k, cachekey.UsedFolder) {
			left = append(left, k)
		}
	}
	if want := []string{recent, prefix + "/acme/notes.txt"}; !slices.Equal(left, want) {
		t.Fatalf("left %q, want only %q\n%s", left, want, out.String())
	}
}

// A restore that loses its object to gc mid-download is a clean miss: no error, nothing written.
func TestRestoreOfAnObjectGCDeletesMidDownloadIsAMiss(t *testing.T) {
	srv := s3test.StartT(t, s3test.Versitygw)
	store, err := srv.Store(t.Context(), 1, 5<<20)
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "c")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	blob := make([]byte, 12<<20) // several ranges
	_, _ = rand.Read(blob)
	if err := os.WriteFile(filepath.Join(src, "blob"), blob, 0o644); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	opts := config.CacheOptions{Compression: archive.Zstd, Restarts: 3}
	k := cachekey.Key{Level: config.LevelPipeline, Name: prefix + "/acme/web/pipeline/" + strings.Repeat("d", 32) + ".tar.zst"}
	if _, err := cache.New(store, buildkite.NewLog(&log), []string{src}, opts).Save(t.Context(), []cachekey.Key{k}); err != nil {
		t.Fatal(err)
	}

	dst := filepath.Join(t.TempDir(), "c")
	r := cache.New(store, buildkite.NewLog(&log), []string{dst}, opts)
	var gcOut bytes.Buffer
	r.Store = &gcMidDownload{Store: store, gc: func(ctx context.Context) {
		plan, err := inventory.GC(ctx, store, prefix, inventory.GCOptions{MaxSize: 1, Now: time.Now}, &gcOut)
		if err != nil || len(plan.Caches) != 1 {
			panic(fmt.Sprintf("gc: %v, %+v", err, plan))
		}
	}}
	got, err := r.Restore(t.Context(), []cachekey.Key{k})
	if err != nil || got.Hit != cache.Miss || !strings.Contains(log.String(), "disappeared during the restore") {
		t.Fatalf("restore = %+v, %v; want a clean miss\n%s\n%s", got, err, log.String(), gcOut.String())
	}
	if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a missed restore created the target: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(dst))
	if len(entries) != 0 {
		t.Fatalf("the restore left %v beside the target", entries)
	}
}

// gcMidDownload runs gc once the first bytes of the first download were read.
type gcMidDownload struct {
	cache.Store
	gc   func(ctx context.Context)
	once sync.Once
}

func (g *gcMidDownload) Open(ctx context.Context, obj s3.Object) io.ReadCloser {
	return &hookReader{ReadCloser: g.Store.Open(ctx, obj), hook: func() { g.once.Do(func() { g.gc(ctx) }) }}
}

type hookReader struct {
	io.ReadCloser
	hook func()
}

func (h *hookReader) Read(p []byte) (int, error) {
	n, err := h.ReadCloser.Read(p)
	if n > 0 && h.hook != nil {
		h.hook()
		h.hook = nil
	}
	return n, err
}
