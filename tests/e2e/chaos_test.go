package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/s3test"
)

// The chaos test's shape. The trees of groups 0 and 1 take several parts of chaosPartSize, so
// multipart uploads and concurrent ranged GETs are exercised; those of groups 2 and 3 are one
// PutObject and one GET.
const (
	chaosJobs        = 48
	chaosParallel    = 4 // jobs at once
	chaosGroups      = 4 // caches with their own keys (key-extra)
	chaosVariants    = 3 // distinct trees a group's jobs install and save
	chaosFaultRate   = 0.12
	chaosStall       = 2 * time.Second // the jobs' stall-timeout
	chaosRate        = 4 << 20         // bytes per second of each request or response body
	chaosPartSize    = "5MiB"
	chaosSeedVar     = "S3_CACHE_CHAOS_SEED"
	chaosLogsVar     = "S3_CACHE_CHAOS_LOGS" // a directory to keep every job's log in
	chaosRestoreTo   = "branch"
	chaosLargeTree   = 11 << 20
	chaosSmallTree   = 1<<20 + 4321
	chaosMarkerTree  = 3000 // what a restoring job's checkout holds before the restore
	chaosHookTimeout = 2 * time.Minute
)

// A job of the chaos test: it restores, and a saving job then installs its own tree and saves it.
type chaosJob struct {
	n                 int
	kind              string // save, force-save or restore
	group, lock, tree int    // its cache, which of the group's two lock files, which tree it installs
	j                 *job

	before      string // the target's listing before pre-command
	pre, post   string // the hooks' output
	hit, hitKey string // what pre-command exported
	restored    string // the target's listing after pre-command, on a hit
}

// TestChaos runs many jobs (saves, force-saves, restores, on several keys) through a proxy that
// injects faults at random into the requests to a real server: dropped connections before and
// after the server acts, stalls longer than the stall timeout, truncated answers, 500
// InternalError and 503 SlowDown. It asserts invariants, never counts: every hook exits 0 (soft-
// fail), every restore leaves either a tree a job stored at the key it reports or the target
// exactly as it was, nothing is left beside the targets or in TMPDIR, no job but a forced one
// writes a key that exists, a job that says it saved did, and no multipart upload that a job
// knew of is left behind (one whose CreateMultipartUpload answer was lost is counted: its job
// never learned its ID). It prints the figures. Set S3_CACHE_CHAOS_SEED to replay a seed's plan and fault odds
// (which request draws which fault still depends on the order requests arrive in), and
// S3_CACHE_CHAOS_LOGS to a directory to keep the jobs' logs.
func TestChaos(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(chaosSeedVar); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s=%q: want an unsigned integer", chaosSeedVar, s)
		}
	}
	t.Logf("seed %d (%s=%d to replay)", seed, chaosSeedVar, seed)
	start := time.Now()

	srv := s3test.StartT(t, s3test.Versitygw)
	proxy, err := s3test.NewProxy(srv.Endpoint)
	must(t, err)
	t.Cleanup(proxy.Close)
	faultRNG := rand.New(rand.NewPCG(seed, 2))
	var faultMu sync.Mutex
	proxy.InjectFaults(func(*http.Request) s3test.Fault {
		faultMu.Lock()
		defer faultMu.Unlock()
		if faultRNG.Float64() >= chaosFaultRate {
			return s3test.NoFault
		}
		return s3test.Faults[faultRNG.IntN(len(s3test.Faults))]
	}, chaosStall+1500*time.Millisecond)
	proxy.Throttle(chaosRate) // transfers long enough for forced saves to overlap restores

	// Each group's trees, made once and hard-linked into the jobs that install them.
	trees := make([][]string, chaosGroups)
	listings := map[string]string{} // tree dir → listing
	for g := range chaosGroups {
		size := chaosSmallTree
		if g < 2 {
			size = chaosLargeTree
		}
		for v := range chaosVariants {
			dir := filepath.Join(t.TempDir(), "node_modules")
			makeTree(t, dir, size+v*777)
			trees[g] = append(trees[g], dir)
			listings[dir] = listing(t, dir)
		}
	}

	a := newAgent(t)
	plan := rand.New(rand.NewPCG(seed, 1))
	jobs := make([]*chaosJob, chaosJobs)
	// Jobs that start together share a cache, and race for it; each cache gets as many blocks.
	var blocks []int
	for len(blocks)*chaosParallel < chaosJobs {
		blocks = append(blocks, plan.Perm(chaosGroups)...)
	}
	for n := range jobs {
		cj := &chaosJob{n: n, group: blocks[n/chaosParallel], lock: plan.IntN(2), tree: plan.IntN(chaosVariants)}
		switch r := plan.Float64(); {
		case r < 0.35:
			cj.kind = "save"
		case r < 0.55:
			cj.kind = "force-save"
		default:
			cj.kind = "restore"
		}
		cj.j = a.job(srv, fmt.Sprintf("chaos-%d", n)).set(
			"ENDPOINT", proxy.URL, "PART_SIZE", chaosPartSize, "CONCURRENCY", "2",
			"STALL_TIMEOUT", chaosStall.String(), "KEY_EXTRA", fmt.Sprintf("group-%d", cj.group),
			"RESTORE", chaosRestoreTo)
		delete(cj.j.env, "BUILDKITE_PLUGIN_S3_CACHE_SAVE")
		if cj.kind != "restore" {
			cj.j.set("SAVE_0", "file", "SAVE_1", "branch")
		}
		if cj.kind == "force-save" {
			cj.j.set("FORCE", "true")
		}
		cj.j.env["AWS_SDK_UA_APP_ID"] = fmt.Sprintf("chaos-%d", n) // names the job in the proxy's log
		must(t, os.WriteFile(filepath.Join(cj.j.checkout, "package-lock.json"),
			fmt.Appendf(nil, `{"lockfileVersion": 3, "group": %d, "lock": %d}`, cj.group, cj.lock), 0o644))
		makeTree(t, cj.j.cacheDir(), chaosMarkerTree)
		cj.before = listing(t, cj.j.cacheDir())
		jobs[n] = cj
	}

	queue := make(chan *chaosJob)
	var wg sync.WaitGroup
	for range chaosParallel {
		wg.Go(func() {
			for cj := range queue {
				cj.run(t, trees[cj.group][cj.tree])
			}
		})
	}
	for _, cj := range jobs {
		queue <- cj
	}
	close(queue)
	wg.Wait()
	ran := time.Since(start)
	if dir := os.Getenv(chaosLogsVar); dir != "" {
		for _, cj := range jobs {
			must(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("job-%02d-%s.log", cj.n, cj.kind)), []byte(cj.pre+"\n"+cj.post), 0o644))
		}
	}
	if t.Failed() {
		return // a hook failed: the checks below would only add noise
	}

	f := checkChaos(t, srv, proxy, jobs, trees, listings)
	f.seed, f.wall = seed, ran
	f.print(t, proxy, jobs)
}

// What the jobs' logs say.
var (
	hitLineRE     = regexp.MustCompile(`(?m)^S3CACHE_(HIT|HIT_KEY)=(.*)$`)
	savedRE       = regexp.MustCompile(`(?m)\bSaved (\S+) \(`)
	lostRaceRE    = regexp.MustCompile(`(?m)Another job already saved (\S+): keeping its copy`)
	saveWarningRE = regexp.MustCompile(`(?m):warning: s3-cache: save (\S+): `)
	skippedRE     = regexp.MustCompile(`(?m)(?:Cache already saved at (\S+): nothing to do|Restored an exact hit of (\S+): nothing to save)`)
	jobOfAgentRE  = regexp.MustCompile(`\bapp/(chaos-\d+)\b`)
)

// run runs one job: pre-command, the command (a saving job installs its tree), post-command.
// It runs on a worker goroutine: it reports with Errorf, and the checks that need every job's
// writes wait for checkChaos.
func (cj *chaosJob) run(t *testing.T, tree string) {
	out, code := cj.runHook(t, `. "$1"; printf '\nS3CACHE_HIT=%s\nS3CACHE_HIT_KEY=%s\n' "${BUILDKITE_PLUGIN_S3_CACHE_HIT-}" "${BUILDKITE_PLUGIN_S3_CACHE_HIT_KEY-}"`, "pre-command")
	cj.pre = out
	if code != 0 {
		t.Errorf("job %d (%s): pre-command exited %d:\n%s", cj.n, cj.kind, code, out)
		return
	}
	for _, m := range hitLineRE.FindAllStringSubmatch(out, -1) {
		if m[1] == "HIT" {
			cj.hit = m[2]
		} else {
			cj.hitKey = m[2]
		}
	}
	target := cj.j.cacheDir()
	switch cj.hit {
	case "exact", "fallback":
		if !strings.Contains(out, "Cache hit ("+cj.hit+", ") || cj.hitKey == "" {
			t.Errorf("job %d: HIT=%s HIT_KEY=%q, but the log says otherwise:\n%s", cj.n, cj.hit, cj.hitKey, out)
		}
		cj.restored = listing(t, target)
	case "miss":
		if got := listing(t, target); got != cj.before {
			t.Errorf("job %d: a restore that missed or failed changed the target:\n%s", cj.n, out)
		}
	default:
		t.Errorf("job %d: pre-command exported HIT=%q:\n%s", cj.n, cj.hit, out)
	}
	if l := leftovers(t, cj.j.checkout); len(l) != 0 {
		t.Errorf("job %d: left in the checkout after pre-command: %q\n%s", cj.n, l, out)
	}
	if cj.kind == "restore" {
		return
	}

	must(t, os.RemoveAll(target)) // the command installs the job's own tree
	linkTree(t, tree, target)
	out, code = cj.runHook(t, `. "$1"`, "post-command")
	cj.post = out
	if code != 0 {
		t.Errorf("job %d (%s): post-command exited %d:\n%s", cj.n, cj.kind, code, out)
	}
}

func (cj *chaosJob) runHook(t *testing.T, script, name string) (string, int) {
	h := cj.j.startScript(script, name)
	select {
	case <-h.done:
	case <-time.After(chaosHookTimeout):
		h.terminate()
		<-h.done
		t.Errorf("job %d: %s did not finish in %s:\n%s", cj.n, name, chaosHookTimeout, h.out)
	}
	return h.out.String(), h.code
}

// A write is a request that creates an object: a PutObject or a CompleteMultipartUpload.
func isWrite(x s3test.Exchange) bool {
	switch x.Method {
	case http.MethodPut:
		return !x.Query.Has("partNumber") && !x.Query.Has("uploadId")
	case http.MethodPost:
		return x.Query.Has("uploadId")
	}
	return false
}

// write is a write of a key that the server performed (it answered 2xx, whether or not the job
// heard the answer).
type write struct {
	cj          *chaosJob
	conditional bool // If-None-Match: *
	start, end  time.Time
	x           s3test.Exchange
}

// repeatsComplete says whether x completes an upload that ws completed already: the SDK
// retried a Complete whose answer was lost. The server answers a repeated Complete with 200 and
// writes nothing (versitygw leaves a forced overwrite in place, and a deleted object deleted).
func repeatsComplete(ws []write, x s3test.Exchange) bool {
	upload := x.Query.Get("uploadId")
	return upload != "" && slices.ContainsFunc(ws, func(w write) bool { return w.x.Query.Get("uploadId") == upload })
}

// chaosFigures are the figures checkChaos gathers besides the jobs' logs and the proxy's counts.
type chaosFigures struct {
	seed         uint64
	wall         time.Duration
	writes       int // writes the server stored (2xx), probes and last-use markers aside
	forced       int // of which by force-saves
	recompleted  int // Completes of an upload completed already (a retry), answered 200
	unknown      int // writes the server got but did not answer before the client gave up
	untruthful   int // "another job already saved" reports by a job whose own write had landed
	warnedLanded int // warnings that a save failed, by a job whose write had landed
	leaked       int // multipart uploads left that a job knew of
	orphans      int // multipart uploads left whose CreateMultipartUpload answer was lost
	probesLeft   int // probe objects left in the bucket
	hooksWarning int // hooks that warned
}

// checkChaos checks the invariants that need every job's outcome and the proxy's log.
func checkChaos(t *testing.T, srv *s3test.Server, proxy *s3test.Proxy, jobs []*chaosJob, trees [][]string, listings map[string]string) chaosFigures {
	t.Helper()
	var f chaosFigures
	byName := map[string]*chaosJob{}
	for _, cj := range jobs {
		byName[fmt.Sprintf("chaos-%d", cj.n)] = cj
	}
	exchanges := proxy.Exchanges()

	// The writes the server performed, per key, in the order they ended.
	writes := map[string][]write{}
	maybe := map[string][]*chaosJob{} // writes whose answer the proxy never got from the server
	usedUploads := map[string]bool{}  // upload IDs some job learned of
	for _, x := range exchanges {
		if id := x.Query.Get("uploadId"); id != "" {
			usedUploads[id] = true
		}
		key := strings.TrimPrefix(x.Path, "/"+srv.Bucket+"/")
		if !isWrite(x) || strings.Contains(key, ".s3-cache-probe/") || strings.Contains(key, ".s3-cache-used/") {
			continue
		}
		m := jobOfAgentRE.FindStringSubmatch(x.Header.Get("User-Agent"))
		if m == nil || byName[m[1]] == nil {
			t.Errorf("a write of %s by an unknown client (User-Agent %q)", key, x.Header.Get("User-Agent"))
			continue
		}
		forwarded := !slices.Contains([]s3test.Fault{s3test.DropBefore, s3test.InternalError, s3test.SlowDown}, x.Fault)
		if x.Status == 0 && forwarded {
			// The client gave up before the server answered: the write may have landed.
			maybe[key] = append(maybe[key], byName[m[1]])
			f.unknown++
		}
		if x.Status/100 != 2 {
			continue
		}
		if repeatsComplete(writes[key], x) {
			f.recompleted++
			continue
		}
		writes[key] = append(writes[key], write{byName[m[1]], x.Header.Get("If-None-Match") == "*", x.Start, x.End, x})
		f.writes++
		if byName[m[1]].kind == "force-save" {
			f.forced++
		}
	}

	// Every key is written once, force aside: a job that does not force writes only with
	// If-None-Match: *, at most once per key, and never after a forced write of it had landed.
	for key, ws := range writes {
		var created *write
		for i, w := range ws {
			if w.cj.kind == "force-save" {
				continue
			}
			if !w.conditional {
				t.Errorf("job %d (%s) wrote %s without If-None-Match", w.cj.n, w.cj.kind, key)
			}
			if created != nil {
				t.Errorf("%s was created twice without force: by job %d (%s) and by job %d (%s)", key,
					created.cj.n, describe(created.x), w.cj.n, describe(w.x))
			}
			created = &ws[i]
		}
		for _, w := range ws {
			if created != nil && w.cj.kind == "force-save" && w.end.Before(created.start) {
				t.Errorf("job %d created %s after job %d's forced write of it had landed", created.cj.n, key, w.cj.n)
			}
		}
	}

	// A job that says it saved a key wrote it. One that says another job did should not have
	// (counted, not asserted: a lost CompleteMultipartUpload answer makes that report today).
	for _, cj := range jobs {
		wrote := func(key string) bool {
			return slices.ContainsFunc(writes[key], func(w write) bool { return w.cj == cj })
		}
		for _, m := range savedRE.FindAllStringSubmatch(cj.post, -1) {
			if !wrote(m[1]) {
				t.Errorf("job %d says it saved %s, but the server stored no write of it by the job:\n%s", cj.n, m[1], cj.post)
			}
		}
		for _, m := range lostRaceRE.FindAllStringSubmatch(cj.post, -1) {
			if wrote(m[1]) {
				f.untruthful++
				t.Logf("job %d says another job saved %s, but its own write landed:\n%s", cj.n, m[1], cj.post)
			}
		}
		for _, m := range saveWarningRE.FindAllStringSubmatch(cj.post, -1) {
			if wrote(m[1]) {
				f.warnedLanded++
			}
		}
		for _, out := range []string{cj.pre, cj.post} {
			if strings.Contains(out, ":warning: s3-cache:") {
				f.hooksWarning++
			}
			for _, line := range strings.Split(out, "\n") {
				if strings.Contains(line, ":warning: s3-cache:") {
					t.Logf("job %d (%s): %s", cj.n, cj.kind, line)
				}
			}
		}
	}

	// Every restored tree is whole: one a job wrote at the key the restore reports.
	for _, cj := range jobs {
		if cj.restored == "" {
			continue
		}
		whole := slices.ContainsFunc(writes[cj.hitKey], func(w write) bool {
			return listings[trees[w.cj.group][w.cj.tree]] == cj.restored
		}) || slices.ContainsFunc(maybe[cj.hitKey], func(w *chaosJob) bool {
			return listings[trees[w.group][w.tree]] == cj.restored
		})
		if !whole {
			t.Errorf("job %d restored a tree at %s (%s) that no job stored there:\n%s", cj.n, cj.hitKey, cj.hit, cj.pre)
		}
		// A fallback is the branch level, or the newest of another lockfile's file-level family.
		newest := strings.Contains(cj.hitKey, "/file/") && strings.Contains(cj.pre, "Newest of ")
		if cj.hit == "exact" && !strings.Contains(cj.hitKey, "/file/") || cj.hit == "fallback" && !strings.Contains(cj.hitKey, "/branch/") && !newest {
			t.Errorf("job %d: a %s hit of %s", cj.n, cj.hit, cj.hitKey)
		}
	}

	// Nothing left behind: no staging or temp files, no multipart upload that any job knew of.
	// An upload whose CreateMultipartUpload answer was lost is one its job never learned of:
	// only a later sweep can abort it. Those are counted, and aborted here.
	if l := leftovers(t, jobs[0].j.env["TMPDIR"]); len(l) != 0 {
		t.Errorf("left in TMPDIR: %q", l)
	}
	ctx := context.Background()
	ups, err := srv.Client().ListMultipartUploads(ctx, &awss3.ListMultipartUploadsInput{Bucket: aws.String(srv.Bucket)})
	must(t, err)
	for _, u := range ups.Uploads {
		if usedUploads[aws.ToString(u.UploadId)] {
			f.leaked++
			t.Errorf("multipart upload of %s left behind (initiated %s)", aws.ToString(u.Key), aws.ToTime(u.Initiated).Format(time.StampMilli))
			continue
		}
		f.orphans++
		_, err := srv.Client().AbortMultipartUpload(ctx, &awss3.AbortMultipartUploadInput{Bucket: aws.String(srv.Bucket), Key: u.Key, UploadId: u.UploadId})
		must(t, err)
	}

	// The bucket holds the caches' objects, and perhaps probe objects whose delete failed.
	for _, k := range objects(t, srv) {
		switch {
		case strings.Contains(k, ".s3-cache-probe/"):
			f.probesLeft++
			for _, x := range exchanges {
				if strings.HasSuffix(x.Path, "/"+k) {
					t.Logf("probe object %s left: %s %v: %s", k, x.Method, x.Query, describe(x))
				}
			}
		case len(writes[k]) == 0 && len(maybe[k]) == 0:
			t.Errorf("object %s in the bucket, but no job wrote it", k)
		}
	}
	return f
}

// print prints the figures to the test log and to stdout, in one block.
func (f chaosFigures) print(t *testing.T, proxy *s3test.Proxy, jobs []*chaosJob) {
	kinds := map[string]int{}
	hits := map[string]int{}
	var hooks, restarts, restartedRestores, stored, lost, skipped, missWarned int
	for _, cj := range jobs {
		kinds[cj.kind]++
		hooks++
		hits[cj.hit]++
		if cj.hit == "miss" && strings.Contains(cj.pre, ":warning: s3-cache:") {
			missWarned++
		}
		if n := strings.Count(cj.pre, "Restarting restore of"); n > 0 {
			restarts += n
			restartedRestores++
		}
		if cj.kind != "restore" {
			hooks++
			stored += len(savedRE.FindAllString(cj.post, -1))
			lost += len(lostRaceRE.FindAllString(cj.post, -1))
			skipped += len(skippedRE.FindAllString(cj.post, -1))
		}
	}
	exchanges := proxy.Exchanges()
	counts := proxy.FaultCounts()
	faults := 0
	var perKind []string
	for _, k := range s3test.Faults {
		faults += counts[k]
		perKind = append(perKind, fmt.Sprintf("%s %d", k, counts[k]))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "=== chaos figures (seed %d; %s=%d replays it) ===\n", f.seed, chaosSeedVar, f.seed)
	fmt.Fprintf(&b, "jobs       %d (save %d, force-save %d, restore %d), %d hooks, %d at a time, wall %s\n",
		len(jobs), kinds["save"], kinds["force-save"], kinds["restore"], hooks, chaosParallel, f.wall.Round(time.Second))
	fmt.Fprintf(&b, "requests   %d, faults injected %d (%.1f%%): %s\n", len(exchanges), faults,
		100*float64(faults)/float64(max(len(exchanges), 1)), strings.Join(perKind, ", "))
	fmt.Fprintf(&b, "restores   %d: exact %d, fallback %d, miss %d (%d of them after a warning); restarts %d in %d restores\n",
		len(jobs), hits["exact"], hits["fallback"], hits["miss"], missWarned, restarts, restartedRestores)
	fmt.Fprintf(&b, "saves      %d keys stored, %d lost the race, %d skipped (already saved)\n", stored, lost, skipped)
	fmt.Fprintf(&b, "writes     %d landed (%d forced); %d Completes repeated by a retry; %d unanswered (may have landed)\n",
		f.writes, f.forced, f.recompleted, f.unknown)
	fmt.Fprintf(&b, "warnings   %d hooks warned (soft-fail), all exited 0\n", f.hooksWarning)
	fmt.Fprintf(&b, "left       %d uploads a job knew of; %d orphaned by a lost CreateMultipartUpload answer; %d probe objects\n",
		f.leaked, f.orphans, f.probesLeft)
	fmt.Fprintf(&b, "untruthful %d \"another job already saved\" and %d \"save failed\" reports by a job whose write had landed\n",
		f.untruthful, f.warnedLanded)
	t.Log("\n" + b.String())
	fmt.Print(b.String())
	// go test shows nothing of a passing package without -v: make test prints the figures from here.
	if p := os.Getenv("S3_CACHE_CHAOS_REPORT"); p != "" {
		if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
			t.Errorf("write the chaos figures: %v", err)
		}
	}
}

// describe says what a job's request was and what became of it.
func describe(x s3test.Exchange) string {
	what := "PutObject"
	if x.Query.Has("uploadId") {
		what = "CompleteMultipartUpload " + x.Query.Get("uploadId")
	}
	if x.Fault != s3test.NoFault {
		what += ", fault " + string(x.Fault)
	}
	return fmt.Sprintf("%s, %s to %s, status %d", what, x.Start.Format("15:04:05.000"), x.End.Format("15:04:05.000"), x.Status)
}
