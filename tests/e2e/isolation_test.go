package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/s3test"
)

// Isolation by branch (docs/design.md#keys), through the hooks against versitygw: what a build
// other than the default branch's saves is never restored by the default branch.

const repo = "git@github.com:acme/web.git"

var exportedRE = regexp.MustCompile(`(?m)^EXPORTED_(HIT|HIT_KEY)=(.*)$`)

// restore runs pre-command and returns its log and what it exported as HIT and HIT_KEY.
func (j *job) restore() (out, hit, hitKey string) {
	j.t.Helper()
	out, code := j.startScript(`. "$1"; printf '\nEXPORTED_HIT=%s\nEXPORTED_HIT_KEY=%s\n' "${BUILDKITE_PLUGIN_S3_CACHE_HIT-}" "${BUILDKITE_PLUGIN_S3_CACHE_HIT_KEY-}"`,
		"pre-command").wait(j.t)
	if code != 0 {
		j.t.Fatalf("pre-command of %s exited %d:\n%s", j.env["BUILDKITE_JOB_ID"], code, out)
	}
	for _, m := range exportedRE.FindAllStringSubmatch(out, -1) {
		if m[1] == "HIT" {
			hit = m[2]
		} else {
			hitKey = m[2]
		}
	}
	return out, hit, hitKey
}

// on sets the job's branch and, for a pull request, its number and repository.
func (j *job) on(branch, pr, prRepo string) *job {
	j.env["BUILDKITE_BRANCH"], j.env["BUILDKITE_REPO"] = branch, repo
	if pr != "" {
		j.env["BUILDKITE_PULL_REQUEST"], j.env["BUILDKITE_PULL_REQUEST_REPO"] = pr, prRepo
	} else {
		j.env["BUILDKITE_PULL_REQUEST"] = "false"
	}
	return j
}

// A pull request whose branch is called main saves into its own namespace; main does not restore it.
func TestPullRequestNamedMainCannotWriteWhatMainRestores(t *testing.T) {
	srv := s3test.StartT(t, s3test.Versitygw)
	a := newAgent(t)
	pr := a.job(srv, "pr").on("main", "7", repo).fill(64 << 10)
	pr.mustSave()
	keys := objects(t, srv)
	if len(keys) != 1 || !strings.Contains(keys[0], "/ns/pr-7/file/") {
		t.Fatalf("the pull request saved %q, want one object in namespace pr-7", keys)
	}

	main := a.job(srv, "main").on("main", "", "")
	out, hit, _ := main.restore()
	if hit != "miss" {
		t.Fatalf("main restored what the pull request saved: HIT=%s\n%s", hit, out)
	}
	if _, err := os.Stat(main.cacheDir()); !os.IsNotExist(err) {
		t.Fatalf("main's cache directory exists after a miss: %v", err)
	}
	// The pull request's next build restores its own save.
	if out, hit, key := a.job(srv, "pr-again").on("main", "7", repo).restore(); hit != "exact" || key != keys[0] {
		t.Fatalf("the pull request's next build: HIT=%s HIT_KEY=%s, want exact of %s\n%s", hit, key, keys[0], out)
	}
}

// A pull request from a fork restores, but saves nothing.
func TestForkPullRequestSavesNothing(t *testing.T) {
	srv := s3test.StartT(t, s3test.Versitygw)
	a := newAgent(t)
	fork := a.job(srv, "fork").on("main", "8", "https://github.com/mallory/web.git")
	if _, hit, _ := fork.restore(); hit != "miss" {
		t.Fatalf("HIT=%s on an empty bucket", hit)
	}
	fork.fill(64 << 10)
	out, code := fork.run("post-command")
	if code != 0 || !strings.Contains(out, "fork pull request (from https://github.com/mallory/web.git): not saving (fork-saves is off)") {
		t.Fatalf("post-command exited %d:\n%s", code, out)
	}
	if keys := objects(t, srv); len(keys) != 0 {
		t.Fatalf("a fork pull request saved %q", keys)
	}
	if left := leftovers(t, a.tmp); len(left) != 0 {
		t.Fatalf("left behind: %q", left)
	}
}

// A feature branch restores main's cache (a fallback from the shared namespace) until it has its
// own; main restores only its own, never the branch's.
func TestFeatureBranchReadsMainsCacheAndItsOwn(t *testing.T) {
	srv := s3test.StartT(t, s3test.Versitygw)
	a := newAgent(t)
	main := a.job(srv, "main").on("main", "", "").fill(64 << 10)
	want := listing(t, main.cacheDir())
	main.mustSave()
	mainKey := objects(t, srv)[0]

	feature := a.job(srv, "feature").on("feature/x", "", "")
	out, hit, key := feature.restore()
	if hit != "fallback" || key != mainKey || !strings.Contains(out, "Restored from the shared namespace") {
		t.Fatalf("feature branch: HIT=%s HIT_KEY=%s, want fallback of %s from the shared namespace\n%s", hit, key, mainKey, out)
	}
	if listing(t, feature.cacheDir()) != want {
		t.Fatal("the feature branch restored another tree than main's")
	}
	// It saves its own tree into its own namespace, and restores it next time.
	must(t, os.RemoveAll(feature.cacheDir()))
	feature.fill(32 << 10)
	branchTree := listing(t, feature.cacheDir())
	if out, code := feature.run("post-command"); code != 0 || !strings.Contains(out, "Saving to namespace branch-feature-x-") {
		t.Fatalf("feature post-command exited %d:\n%s", code, out)
	}
	var branchKey string
	for _, k := range objects(t, srv) {
		if k != mainKey {
			branchKey = k
		}
	}
	if !strings.Contains(branchKey, "/ns/branch-feature-x-") {
		t.Fatalf("the feature branch saved %q, want it in its namespace", branchKey)
	}
	again := a.job(srv, "feature-again").on("feature/x", "", "")
	if out, hit, key := again.restore(); hit != "exact" || key != branchKey || listing(t, again.cacheDir()) != branchTree {
		t.Fatalf("feature branch's next build: HIT=%s HIT_KEY=%s, want exact of %s\n%s", hit, key, branchKey, out)
	}

	// Main restores its own object, not the branch's newer one.
	m2 := a.job(srv, "main-again").on("main", "", "")
	if out, hit, key := m2.restore(); hit != "exact" || key != mainKey || listing(t, m2.cacheDir()) != want {
		t.Fatalf("main: HIT=%s HIT_KEY=%s, want exact of %s\n%s", hit, key, mainKey, out)
	}
	// With a lockfile only the branch has saved for, main misses every level and falls back to
	// the newest of its own family (restore-newest), never to the branch's newer object.
	changed := a.job(srv, "feature-lock").on("feature/x", "", "").fill(16 << 10)
	must(t, os.WriteFile(filepath.Join(changed.checkout, "package-lock.json"), []byte(`{"lockfileVersion": 3, "x": 1}`), 0o644))
	changed.mustSave()
	m3 := a.job(srv, "main-lock").on("main", "", "")
	must(t, os.WriteFile(filepath.Join(m3.checkout, "package-lock.json"), []byte(`{"lockfileVersion": 3, "x": 1}`), 0o644))
	if out, hit, key := m3.restore(); hit != "fallback" || key != mainKey {
		t.Fatalf("main: HIT=%s HIT_KEY=%s, want a fallback to its own %s\n%s", hit, key, mainKey, out)
	}
	m4 := a.job(srv, "main-lock-off").on("main", "", "").set("RESTORE_NEWEST", "false")
	must(t, os.WriteFile(filepath.Join(m4.checkout, "package-lock.json"), []byte(`{"lockfileVersion": 3, "x": 1}`), 0o644))
	if out, hit, _ := m4.restore(); hit != "miss" {
		t.Fatalf("main restored the branch's cache: HIT=%s\n%s", hit, out)
	}
}
