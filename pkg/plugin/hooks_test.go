package plugin

// The hooks' logic run against a fake cache through Invocation.newCache: no server, no archive.
// The cache itself is tested in pkg/cache, the shims in tests/*.bats and tests/e2e.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/buildkite"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cache"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cachekey"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/s3"
)

// fakeCache records what the hooks ask of the cache and answers as told.
type fakeCache struct {
	hitAt      int // index of the candidate that exists; -1: none (a miss)
	restoreErr error
	saveErr    error
	opened     int              // how often a hook built the cache
	restores   [][]cachekey.Key // the candidates of each Restore
	lookups    [][]cachekey.Key // the candidates of each Lookup
	saves      [][]cachekey.Key // the keys of each Save
}

func (f *fakeCache) open(context.Context) (hookCache, error) { f.opened++; return f, nil }

func (f *fakeCache) Restore(_ context.Context, candidates []cachekey.Key) (cache.Restored, error) {
	f.restores = append(f.restores, candidates)
	return f.answer(candidates)
}

func (f *fakeCache) Lookup(_ context.Context, candidates []cachekey.Key) (cache.Restored, error) {
	f.lookups = append(f.lookups, candidates)
	return f.answer(candidates)
}

// answer is what a Restore or a Lookup of candidates finds.
func (f *fakeCache) answer(candidates []cachekey.Key) (cache.Restored, error) {
	switch {
	case f.restoreErr != nil:
		return cache.Restored{Hit: cache.Miss}, f.restoreErr
	case f.hitAt < 0 || f.hitAt >= len(candidates):
		return cache.Restored{Hit: cache.Miss}, nil
	case f.hitAt == 0:
		return cache.Restored{Hit: cache.Exact, Key: candidates[0]}, nil
	default:
		return cache.Restored{Hit: cache.Fallback, Key: candidates[f.hitAt]}, nil
	}
}

func (f *fakeCache) Save(_ context.Context, keys []cachekey.Key) ([]cache.Saved, error) {
	f.saves = append(f.saves, keys)
	return make([]cache.Saved, len(keys)), f.saveErr
}

// savedNames lists the keys of every Save, in order.
func (f *fakeCache) savedNames() []string {
	var out []string
	for _, keys := range f.saves {
		for _, k := range keys {
			out = append(out, k.Name)
		}
	}
	return out
}

// isolate gives the test its own state directory and no binary cache to guard.
func isolate(t *testing.T) {
	t.Helper()
	t.Setenv("TMPDIR", t.TempDir())
	t.Setenv(BinaryCacheEnv, "")
}

// invocation is one hook run of a step-level cache of node_modules that restores up to restore
// and saves under save, with fc as its cache.
func invocation(t *testing.T, restore config.Level, save []config.Level, fc *fakeCache) (*Invocation, *bytes.Buffer) {
	t.Helper()
	var log bytes.Buffer
	dir := t.TempDir()
	return &Invocation{
		Config: &config.Config{Paths: []string{"node_modules"}, Restore: restore, Save: save, When: config.WhenOnSuccess,
			SoftFail: true, Cache: config.CacheOptions{Restarts: 3}, Store: s3.Options{Bucket: "b"}},
		Job: buildkite.Job{ID: "job-1", Organization: "acme", Pipeline: "web", Branch: "main", DefaultBranch: "main", Step: "deps",
			ExitStatus: "0", Dir: dir, Home: filepath.Join(dir, "home")},
		Log: buildkite.NewLog(&log), Outputs: map[string]string{}, newCache: fc.open,
	}, &log
}

// keyOf is the key of level that inv saves under.
func keyOf(t *testing.T, inv *Invocation, level config.Level) cachekey.Key {
	t.Helper()
	keys, err := inv.keys(t.Context(), []config.Level{level}, inv.scope().write)
	if err != nil {
		t.Fatal(err)
	}
	return keys[0]
}

func TestPreCommandExportsTheHit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hitAt int
		hit   cache.Hit
		level config.Level // of the key restored; "" on a miss
	}{
		{"miss", -1, cache.Miss, ""},
		{"exact", 0, cache.Exact, config.LevelStep},
		{"fallback", 2, cache.Fallback, config.LevelPipeline},
	} {
		t.Run(tc.name, func(t *testing.T) {
			isolate(t)
			fc := &fakeCache{hitAt: tc.hitAt}
			inv, _ := invocation(t, config.LevelAll, []config.Level{config.LevelStep}, fc)
			if err := PreCommand(t.Context(), inv); err != nil {
				t.Fatal(err)
			}
			// No manifest: the ladder starts at step and goes up to restore.
			if len(fc.restores) != 1 || len(fc.restores[0]) != 4 || fc.restores[0][0].Level != config.LevelStep ||
				fc.restores[0][3].Level != config.LevelAll {
				t.Fatalf("restore candidates %+v, want step to all", fc.restores)
			}
			want := map[string]string{OutputHit: string(tc.hit)}
			if tc.level != "" {
				want[OutputHitKey], want[OutputHitLevel] = keyOf(t, inv, tc.level).Name, string(tc.level)
			}
			if !maps.Equal(inv.Outputs, want) {
				t.Fatalf("outputs %v, want %v", inv.Outputs, want)
			}
			if len(fc.saves) != 0 {
				t.Fatalf("pre-command saved: %v", fc.saves)
			}
		})
	}
}

// Post-command saves under the keys pre-command computed, skipping the one it restored exactly
// (unless force), and removes the state.
func TestStateCarriesKeysFromPreToPost(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hitAt int
		force bool
		skip  bool // the exact hit's key is not saved again
	}{
		{"exact hit", 0, false, true},
		{"exact hit, force", 0, true, false},
		{"fallback", 1, false, false},
		{"miss", -1, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			isolate(t)
			fc := &fakeCache{hitAt: tc.hitAt}
			save := []config.Level{config.LevelStep, config.LevelBranch}
			inv, _ := invocation(t, config.LevelBranch, save, fc)
			inv.Config.Cache.Force = tc.force
			step, branch := keyOf(t, inv, config.LevelStep), keyOf(t, inv, config.LevelBranch)
			if err := PreCommand(t.Context(), inv); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(inv.statePath()); err != nil {
				t.Fatalf("no state file after pre-command: %v", err)
			}

			// Post-command is another process: a fresh invocation that reads pre-command's state.
			post, log := invocation(t, config.LevelBranch, save, fc)
			post.Config.Cache.Force = tc.force
			if err := PostCommand(t.Context(), post); err != nil {
				t.Fatal(err)
			}
			want := []string{step.Name, branch.Name}
			if tc.skip {
				want = want[1:]
				if !strings.Contains(log.String(), "Restored an exact hit of "+step.Name+": nothing to save") {
					t.Errorf("log lacks the skipped save:\n%s", log)
				}
			}
			if got := fc.savedNames(); !slices.Equal(got, want) || len(fc.saves) != 1 {
				t.Fatalf("saved %q in %d call(s), want %q in one", got, len(fc.saves), want)
			}
			if _, err := os.Stat(post.statePath()); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("state file left after post-command: %v", err)
			}
		})
	}
}

// An exact hit with a single save level saves nothing: the cache is not even built.
func TestExactHitOfTheOnlySaveKeySavesNothing(t *testing.T) {
	isolate(t)
	fc := &fakeCache{hitAt: 0}
	inv, _ := invocation(t, config.LevelStep, []config.Level{config.LevelStep}, fc)
	if err := PreCommand(t.Context(), inv); err != nil {
		t.Fatal(err)
	}
	post, _ := invocation(t, config.LevelStep, []config.Level{config.LevelStep}, fc)
	if err := PostCommand(t.Context(), post); err != nil {
		t.Fatal(err)
	}
	if len(fc.saves) != 0 {
		t.Fatalf("saved %v", fc.saves)
	}
}

// Without pre-command's state (no pre-command ran, or its state was lost), post-command
// computes the keys itself.
func TestPostCommandWithoutState(t *testing.T) {
	isolate(t)
	fc := &fakeCache{hitAt: -1}
	inv, log := invocation(t, "", []config.Level{config.LevelStep}, fc)
	if err := PostCommand(t.Context(), inv); err != nil {
		t.Fatal(err)
	}
	if got, want := fc.savedNames(), []string{keyOf(t, inv, config.LevelStep).Name}; !slices.Equal(got, want) {
		t.Fatalf("saved %q, want %q", got, want)
	}
	if !strings.Contains(log.String(), "No state from pre-command: computing the keys now") {
		t.Errorf("log:\n%s", log)
	}
}

func TestPostCommandSavesWhenTheOutcomeAsks(t *testing.T) {
	for _, tc := range []struct {
		when   config.When
		status string
		save   bool
	}{
		// The whole truth table is TestSkipForExitStatus's; here, what a hook does with it.
		{config.WhenOnSuccess, "1", false},
		{config.WhenOnFailure, "0", false},
		{config.WhenOnFailure, "2", true},
		{config.WhenAlways, "137", true},
	} {
		isolate(t)
		fc := &fakeCache{hitAt: -1}
		inv, _ := invocation(t, config.LevelStep, []config.Level{config.LevelStep}, fc)
		inv.Config.When = tc.when
		if err := PreCommand(t.Context(), inv); err != nil {
			t.Fatal(err)
		}
		post, log := invocation(t, config.LevelStep, []config.Level{config.LevelStep}, fc)
		post.Config.When, post.Job.ExitStatus = tc.when, tc.status
		if err := PostCommand(t.Context(), post); err != nil {
			t.Fatal(err)
		}
		if saved := len(fc.saves) == 1; saved != tc.save || !tc.save && !strings.Contains(log.String(), "Not saving cache") {
			t.Errorf("when %s, exit status %s: %d save(s), want saved = %v; log:\n%s", tc.when, tc.status, len(fc.saves), tc.save, log)
		}
		if _, err := os.Stat(post.statePath()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("when %s, exit status %s: state file left: %v", tc.when, tc.status, err)
		}
	}
}

// Restore-only leaves no state and post-command does nothing; save-only restores nothing and
// exports nothing.
func TestRestoreOnlyAndSaveOnly(t *testing.T) {
	t.Run("restore only", func(t *testing.T) {
		isolate(t)
		fc := &fakeCache{hitAt: 0}
		inv, _ := invocation(t, config.LevelStep, nil, fc)
		if err := PreCommand(t.Context(), inv); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(inv.statePath()); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("restore-only wrote state: %v", err)
		}
		post, _ := invocation(t, config.LevelStep, nil, fc)
		if err := PostCommand(t.Context(), post); err != nil {
			t.Fatal(err)
		}
		if fc.opened != 1 || len(fc.restores) != 1 || len(fc.saves) != 0 {
			t.Fatalf("opened %d, restores %d, saves %d; want 1, 1, 0", fc.opened, len(fc.restores), len(fc.saves))
		}
	})
	t.Run("save only", func(t *testing.T) {
		isolate(t)
		fc := &fakeCache{hitAt: 0}
		inv, _ := invocation(t, "", []config.Level{config.LevelStep}, fc)
		if err := PreCommand(t.Context(), inv); err != nil {
			t.Fatal(err)
		}
		if fc.opened != 0 || len(inv.Outputs) != 0 {
			t.Fatalf("save-only pre-command built the cache %d time(s), exported %v", fc.opened, inv.Outputs)
		}
		post, _ := invocation(t, "", []config.Level{config.LevelStep}, fc)
		if err := PostCommand(t.Context(), post); err != nil {
			t.Fatal(err)
		}
		if len(fc.saves) != 1 {
			t.Fatalf("saves %v, want one", fc.saves)
		}
	})
}

// A failed restore is a miss, and pre-command still records the keys to save.
func TestFailedRestoreIsAMissWithState(t *testing.T) {
	isolate(t)
	fc := &fakeCache{hitAt: 0, restoreErr: errors.New("endpoint unreachable")}
	inv, _ := invocation(t, config.LevelStep, []config.Level{config.LevelStep}, fc)
	if err := PreCommand(t.Context(), inv); err == nil || err.Error() != "endpoint unreachable" {
		t.Fatalf("got %v, want the restore's error", err)
	}
	if inv.Outputs[OutputHit] != string(cache.Miss) || len(inv.Outputs) != 1 {
		t.Fatalf("outputs %v, want a miss", inv.Outputs)
	}
	if _, err := os.Stat(inv.statePath()); err != nil {
		t.Fatalf("no state after a failed restore: %v", err)
	}
}

// mainEnv sets the environment of a hook run by the agent in a fresh checkout (the working
// directory), with the plugin's keys given as pairs.
func mainEnv(t *testing.T, keys ...string) {
	t.Helper()
	isolate(t)
	t.Chdir(t.TempDir())
	for k, v := range map[string]string{"BUILDKITE_JOB_ID": "job-1", "BUILDKITE_ORGANIZATION_SLUG": "acme",
		"BUILDKITE_PIPELINE_SLUG": "web", "BUILDKITE_BRANCH": "main", "BUILDKITE_PIPELINE_DEFAULT_BRANCH": "main", "BUILDKITE_STEP_KEY": "deps",
		"BUILDKITE_COMMAND_EXIT_STATUS": "0", "HOME": t.TempDir()} {
		t.Setenv(k, v)
	}
	for i := 0; i+1 < len(keys); i += 2 {
		t.Setenv(config.Prefix+keys[i], keys[i+1])
	}
}

// The exit policy as Main applies it: configuration errors fail before the cache is built; a
// runtime error fails the hook only without soft-fail; the env file carries the outputs.
func TestMainExitPolicy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		keys    []string
		fc      fakeCache
		hook    Hook
		status  int
		opened  int
		logHas  string
		exports string // a line of the env file, "" for no file
	}{
		{"hit", []string{"SOFT_FAIL", "true"}, fakeCache{hitAt: 0}, PreCommand, 0, 1, "", OutputHit + "=exact\n"},
		{"runtime error, soft-fail", []string{"SOFT_FAIL", "true"}, fakeCache{restoreErr: errors.New("boom")}, PreCommand, 0, 1,
			"boom (the build goes on: soft-fail is on)", OutputHit + "=miss\n"},
		{"runtime error, no soft-fail", []string{"SOFT_FAIL", "false"}, fakeCache{restoreErr: errors.New("boom")}, PreCommand, 1, 1,
			"+++ :rotating_light: s3-cache: boom", OutputHit + "=miss\n"},
		{"save error, soft-fail", nil, fakeCache{hitAt: -1, saveErr: errors.New("denied")}, PostCommand, 0, 1,
			"denied (the build goes on: soft-fail is on)", ""},
		{"unknown key", []string{"BUKET", "b"}, fakeCache{}, PreCommand, 1, 0, "invalid configuration: buket: unknown key", ""},
		{"invalid value", []string{"DOWNLOAD_RETRIES", "-1"}, fakeCache{}, PostCommand, 1, 0,
			"invalid configuration: download-retries: invalid value -1", ""},
		{"path that holds the checkout", []string{"PATH", "."}, fakeCache{}, PreCommand, 1, 0,
			"invalid configuration: path: \".\" is or contains the checkout", ""},
		// A manifest that matches nothing is found only when the hook hashes it.
		{"configuration error from a hook, soft-fail", []string{"SOFT_FAIL", "true", "RESTORE", "file", "SAVE", "<unset>", "MANIFEST", "missing.lock"}, fakeCache{}, PreCommand, 1, 0,
			"invalid configuration: manifest", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys := map[string]string{"PATH": "node_modules", "BUCKET": "b", "RESTORE": "step", "SAVE": "step"}
			for i := 0; i+1 < len(tc.keys); i += 2 {
				keys[tc.keys[i]] = tc.keys[i+1]
			}
			var pairs []string
			for k, v := range keys {
				if v != "<unset>" {
					pairs = append(pairs, k, v)
				}
			}
			mainEnv(t, pairs...)
			envFile := filepath.Join(t.TempDir(), "env")
			var out bytes.Buffer
			fc := tc.fc
			if got := run("pre-command", tc.hook, []string{"--env-file", envFile}, &out, fc.open); got != tc.status {
				t.Fatalf("exit status %d, want %d; log:\n%s", got, tc.status, out.String())
			}
			if fc.opened != tc.opened {
				t.Errorf("the cache was built %d time(s), want %d", fc.opened, tc.opened)
			}
			if !strings.Contains(out.String(), tc.logHas) {
				t.Errorf("log lacks %q:\n%s", tc.logHas, out.String())
			}
			env, err := os.ReadFile(envFile)
			if tc.exports != "" && !strings.Contains(string(env), tc.exports) {
				t.Errorf("env file %q (%v) lacks %q", env, err, tc.exports)
			}
		})
	}
}

func TestExitStatus(t *testing.T) {
	cfgErr := &config.Error{Key: "path", Msg: "bad"}
	for _, tc := range []struct {
		err                 error
		cancelled, softFail bool
		want                int
		log                 string
	}{
		{nil, false, false, 0, ""},
		{nil, true, false, 0, ""},
		{cfgErr, false, true, 1, "invalid configuration: path: bad"},
		{errors.New("x"), true, true, 1, "pre-command cancelled: x"},
		{errors.New("x"), false, true, 0, "x (the build goes on: soft-fail is on)"},
		{errors.New("x"), false, false, 1, ":rotating_light: s3-cache: x"},
	} {
		var out bytes.Buffer
		if got := exitStatus("pre-command", tc.err, tc.cancelled, tc.softFail, buildkite.NewLog(&out)); got != tc.want ||
			!strings.Contains(out.String(), tc.log) || tc.log == "" && out.Len() != 0 {
			t.Errorf("%v, cancelled %v, soft-fail %v: %d, %q; want %d, %q", tc.err, tc.cancelled, tc.softFail, got, out.String(), tc.want, tc.log)
		}
	}
}

// Lookup-only asks the cache to look up, never to restore, and exports what it found.
// Post-command then saves as usual, but after an exact hit (which it never restored) nothing.
func TestLookupOnly(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hitAt int
		hit   cache.Hit
		saved bool
	}{
		{"exact", 0, cache.Exact, false},
		{"fallback", 1, cache.Fallback, true},
		{"miss", -1, cache.Miss, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			isolate(t)
			fc := &fakeCache{hitAt: tc.hitAt}
			save := []config.Level{config.LevelStep, config.LevelBranch}
			inv, _ := invocation(t, config.LevelBranch, save, fc)
			inv.Config.LookupOnly = true
			if err := PreCommand(t.Context(), inv); err != nil {
				t.Fatal(err)
			}
			if len(fc.restores) != 0 || len(fc.lookups) != 1 || len(fc.lookups[0]) != 2 {
				t.Fatalf("restores %v, lookups %v; want one lookup of step and branch", fc.restores, fc.lookups)
			}
			if got := inv.Outputs[OutputHit]; got != string(tc.hit) {
				t.Fatalf("exported %s=%s, want %s", OutputHit, got, tc.hit)
			}
			if tc.hitAt >= 0 && inv.Outputs[OutputHitKey] != fc.lookups[0][tc.hitAt].Name {
				t.Fatalf("exported %v, want the key found", inv.Outputs)
			}
			post, log := invocation(t, config.LevelBranch, save, fc)
			post.Config.LookupOnly = true
			if err := PostCommand(t.Context(), post); err != nil {
				t.Fatal(err)
			}
			if saved := len(fc.saves) == 1 && len(fc.saves[0]) == 2; saved != tc.saved {
				t.Fatalf("saves %v, want saved at both levels = %v; log:\n%s", fc.saves, tc.saved, log)
			}
			if !tc.saved && !strings.Contains(log.String(), "Lookup-only found an exact hit of") {
				t.Errorf("log lacks why nothing was saved:\n%s", log)
			}
		})
	}
}

// namespaceOf is the namespace folder in an object's name, "" for the shared namespace.
func namespaceOf(name string) string {
	if _, rest, ok := strings.Cut(name, "/ns/"); ok {
		ns, _, _ := strings.Cut(rest, "/")
		return ns
	}
	return ""
}

// Isolation by branch: which namespace each kind of build writes, and what it restores from.
func TestIsolation(t *testing.T) {
	const repo = "git@github.com:acme/web.git"
	feature := cachekey.BranchNamespace("feature/x")
	for _, tc := range []struct {
		name  string
		job   func(*buildkite.Job)
		cfg   func(*config.Config)
		write string   // the namespace saved to; "-" saves nothing
		reads []string // the namespaces of the restore candidates, in order
		logs  []string // lines pre- and post-command log
	}{
		{name: "default branch", job: func(j *buildkite.Job) {}, write: "", reads: []string{""},
			logs: []string{`Restoring from the shared namespace: branch "main" is the pipeline's default branch`,
				`Saving to the shared namespace: branch "main" is the pipeline's default branch`}},
		{name: "feature branch", job: func(j *buildkite.Job) { j.Branch = "feature/x" }, write: feature, reads: []string{feature, ""},
			logs: []string{"Restoring from namespace " + feature + ", then from the shared namespace: branch \"feature/x\" is not the pipeline's default branch (main)",
				"Saving to namespace " + feature}},
		{name: "pull request from a branch called main", job: func(j *buildkite.Job) { j.PullRequest, j.PullRequestRepo, j.Repo = "7", repo, repo },
			write: "pr-7", reads: []string{"pr-7", ""}, logs: []string{`pull request #7 (branch "main") saves only to its own namespace`, "Saving to namespace pr-7"}},
		{name: "fork pull request", job: func(j *buildkite.Job) {
			j.PullRequest, j.PullRequestRepo, j.Repo = "8", "https://github.com/mallory/web.git", repo
		}, write: "-", reads: []string{"pr-8", ""},
			logs: []string{"fork pull request (from https://github.com/mallory/web.git): not saving (fork-saves is off)"}},
		{name: "fork pull request, fork-saves", job: func(j *buildkite.Job) {
			j.PullRequest, j.PullRequestRepo, j.Repo = "8", "https://github.com/mallory/web.git", repo
		}, cfg: func(c *config.Config) { c.ForkSaves = true }, write: "pr-8", reads: []string{"pr-8", ""}},
		{name: "isolation none", job: func(j *buildkite.Job) { j.Branch, j.PullRequest = "feature/x", "9" },
			cfg: func(c *config.Config) { c.Isolation = config.IsolationNone }, write: "", reads: []string{""},
			logs: []string{"isolation is none: every build shares the caches"}},
		{name: "default branch not set", job: func(j *buildkite.Job) { j.DefaultBranch = "" },
			write: cachekey.BranchNamespace("main"), reads: []string{cachekey.BranchNamespace("main"), ""},
			logs: []string{"BUILDKITE_PIPELINE_DEFAULT_BRANCH is not set"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			isolate(t)
			save := []config.Level{config.LevelStep, config.LevelPipeline}
			run := func(hook Hook) (*fakeCache, string) {
				fc := &fakeCache{hitAt: -1}
				inv, log := invocation(t, config.LevelPipeline, save, fc)
				inv.Config.Isolation = config.IsolationBranch
				tc.job(&inv.Job)
				if tc.cfg != nil {
					tc.cfg(inv.Config)
				}
				if err := hook(t.Context(), inv); err != nil {
					t.Fatal(err)
				}
				return fc, log.String()
			}
			pre, preLog := run(PreCommand)
			if entries, _ := os.ReadDir(stateDir()); (len(entries) == 0) != (tc.write == "-") {
				t.Errorf("state after pre-command: %d file(s), want one unless the build saves nothing", len(entries))
			}
			post, postLog := run(PostCommand)

			var reads []string
			for i, k := range pre.restores[0] {
				// Each namespace's candidates are the whole ladder, narrowest first.
				if want := []config.Level{config.LevelStep, config.LevelBranch, config.LevelPipeline}[i%3]; k.Level != want {
					t.Errorf("candidate %d is of level %s, want %s", i, k.Level, want)
				}
				if namespaceOf(k.Name) != k.Namespace {
					t.Errorf("candidate %s: namespace %q not in its name", k.Name, k.Namespace)
				}
				if i%3 == 0 {
					reads = append(reads, k.Namespace)
				}
			}
			if !slices.Equal(reads, tc.reads) {
				t.Errorf("restores from namespaces %q, want %q", reads, tc.reads)
			}
			saved := post.savedNames()
			switch {
			case tc.write == "-" && len(saved) != 0:
				t.Errorf("saved %q, want nothing", saved)
			case tc.write != "-" && len(saved) != len(save):
				t.Errorf("saved %q, want %d keys", saved, len(save))
			}
			for _, name := range saved {
				if ns := namespaceOf(name); ns != tc.write {
					t.Errorf("saved %s in namespace %q, want %q", name, ns, tc.write)
				}
			}
			for _, l := range tc.logs {
				if !strings.Contains(preLog+postLog, l) {
					t.Errorf("log lacks %q:\n%s%s", l, preLog, postLog)
				}
			}
		})
	}
}

// fail-on-cache-miss turns a miss, and a restore that failed, into a missError naming the keys
// tried, which Main fails with exit 1 whatever soft-fail says; a hit passes.
func TestFailOnCacheMiss(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fc     fakeCache
		lookup bool
		status int
		logHas string
	}{
		{"hit", fakeCache{hitAt: 1}, false, 0, ""},
		{"lookup-only hit", fakeCache{hitAt: 0}, true, 0, ""},
		{"miss", fakeCache{hitAt: -1}, false, 1, "cache miss and fail-on-cache-miss is on: no cache at any of the keys; tried "},
		{"lookup-only miss", fakeCache{hitAt: -1}, true, 1, "cache miss and fail-on-cache-miss is on: no cache at any of the keys; tried "},
		{"failed restore", fakeCache{restoreErr: errors.New("endpoint\nunreachable")}, false, 1,
			"cache miss and fail-on-cache-miss is on: the restore failed (endpoint unreachable); tried "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mainEnv(t, "PATH", "node_modules", "BUCKET", "b", "RESTORE", "branch", "SAVE", "step", "SOFT_FAIL", "true",
				"FAIL_ON_CACHE_MISS", "true", "LOOKUP_ONLY", strconv.FormatBool(tc.lookup))
			var out bytes.Buffer
			fc := tc.fc
			if got := run("pre-command", PreCommand, nil, &out, fc.open); got != tc.status {
				t.Fatalf("exit status %d, want %d; log:\n%s", got, tc.status, out.String())
			}
			if tc.logHas == "" {
				return
			}
			tried := slices.Concat(fc.restores, fc.lookups)
			if len(tried) != 1 || len(tried[0]) != 2 {
				t.Fatalf("candidates %v, want one call with step and branch", tried)
			}
			line := ":rotating_light: s3-cache: " + tc.logHas + tried[0][0].Name + ", " + tried[0][1].Name + "\n"
			if !strings.Contains(out.String(), line) {
				t.Errorf("log lacks the line %q:\n%s", line, out.String())
			}
		})
	}
}

// The threat itself: nothing a pull request (whatever its branch is called) or another branch
// saves is among the keys the default branch restores.
func TestDefaultBranchNeverRestoresWhatOthersSave(t *testing.T) {
	isolate(t)
	levels := []config.Level{config.LevelStep, config.LevelBranch, config.LevelPipeline, config.LevelAll}
	fc := &fakeCache{hitAt: -1}
	main, _ := invocation(t, config.LevelAll, levels, fc)
	if err := PreCommand(t.Context(), main); err != nil {
		t.Fatal(err)
	}
	restored := map[string]bool{}
	for _, k := range fc.restores[0] {
		restored[k.Name] = true
	}
	for i, job := range []func(*buildkite.Job){
		func(j *buildkite.Job) { j.PullRequest = "7" },                    // branch main
		func(j *buildkite.Job) { j.PullRequest, j.Branch = "7", "pr-7" },  // named like a namespace
		func(j *buildkite.Job) { j.Branch = "feature" },                   // another branch
		func(j *buildkite.Job) { j.Branch, j.DefaultBranch = "main", "" }, // default branch unknown
	} {
		other, _ := invocation(t, config.LevelAll, levels, fc)
		other.Job.ID = fmt.Sprintf("other-%d", i) // not main's job, whose state is there
		job(&other.Job)
		if err := PostCommand(t.Context(), other); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range fc.savedNames() {
		if restored[name] {
			t.Errorf("%s is saved by a build other than the default branch's and restored by it", name)
		}
	}
	if len(fc.savedNames()) != 4*len(levels) {
		t.Fatalf("saved %d keys, want %d", len(fc.savedNames()), 4*len(levels))
	}
}

// A feature branch's exact hit is in its own namespace; main's cache is a fallback to it.
func TestHitKindsAcrossNamespaces(t *testing.T) {
	for _, tc := range []struct {
		hitAt int
		hit   cache.Hit
		from  string
	}{
		{0, cache.Exact, "Restored from namespace " + cachekey.BranchNamespace("feature")},
		{1, cache.Fallback, "Restored from the shared namespace"},
	} {
		isolate(t)
		fc := &fakeCache{hitAt: tc.hitAt}
		inv, log := invocation(t, config.LevelStep, []config.Level{config.LevelStep}, fc)
		inv.Job.Branch = "feature"
		if err := PreCommand(t.Context(), inv); err != nil {
			t.Fatal(err)
		}
		if inv.Outputs[OutputHit] != string(tc.hit) || inv.Outputs[OutputHitKey] != fc.restores[0][tc.hitAt].Name ||
			!strings.Contains(log.String(), tc.from) {
			t.Errorf("hit at %d: outputs %v, want %s of %s; log:\n%s", tc.hitAt, inv.Outputs, tc.hit, fc.restores[0][tc.hitAt].Name, log)
		}
	}
}

// The newest-match fallback comes after every level of every namespace, own namespace first, and
// only for a ladder with the file level, unless restore-newest is off.
func TestNewestMatchCandidates(t *testing.T) {
	for _, tc := range []struct {
		name     string
		branch   string
		restore  config.Level
		newest   bool
		families []string // the namespaces of the family candidates, in order
	}{
		{"default branch", "main", config.LevelStep, true, []string{""}},
		{"feature branch", "feature", config.LevelPipeline, true, []string{cachekey.BranchNamespace("feature"), ""}},
		{"restore-newest off", "main", config.LevelStep, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			isolate(t)
			fc := &fakeCache{hitAt: -1}
			inv, _ := invocation(t, tc.restore, nil, fc)
			inv.Job.Branch, inv.Config.RestoreNewest, inv.Config.Manifest = tc.branch, tc.newest, []string{"package-lock.json"}
			must := func(err error) {
				if err != nil {
					t.Fatal(err)
				}
			}
			must(os.WriteFile(filepath.Join(inv.Job.Dir, "package-lock.json"), []byte("{}"), 0o644))
			must(PreCommand(t.Context(), inv))
			cands := fc.restores[0]
			levels := len(inv.Config.RestoreLadder())
			if want := levels*len(inv.scope().reads) + len(tc.families); len(cands) != want {
				t.Fatalf("%d candidates, want %d: %+v", len(cands), want, cands)
			}
			for i, k := range cands {
				fam := i >= len(cands)-len(tc.families)
				if k.Newest != fam {
					t.Errorf("candidate %d (%s): newest %v, want %v", i, k.Name, k.Newest, fam)
				}
				if fam {
					want := tc.families[i-(len(cands)-len(tc.families))]
					if k.Namespace != want || k.Level != config.LevelFile || !strings.HasSuffix(k.Name, "/") {
						t.Errorf("family candidate %+v, want the file-level family of namespace %q", k, want)
					}
				}
			}
		})
	}
	t.Run("no file level", func(t *testing.T) {
		isolate(t)
		fc := &fakeCache{hitAt: -1}
		inv, _ := invocation(t, config.LevelStep, nil, fc)
		inv.Config.RestoreNewest = true
		if err := PreCommand(t.Context(), inv); err != nil {
			t.Fatal(err)
		}
		for _, k := range fc.restores[0] {
			if k.Newest {
				t.Errorf("a family candidate without a file level: %+v", k)
			}
		}
	})
}

// The command runs between the hooks as the same user and can rewrite the state file: a key
// that is not one this build saves under (the shared namespace's, for an isolated build) is never
// saved; post-command computes its own keys instead.
func TestATamperedStateNeverSavesForeignKeys(t *testing.T) {
	isolate(t)
	fc := &fakeCache{hitAt: -1}
	save := []config.Level{config.LevelStep, config.LevelBranch}
	inv, _ := invocation(t, config.LevelBranch, save, fc)
	inv.Job.Branch = "feature" // isolated: it saves only to its own namespace
	if err := PreCommand(t.Context(), inv); err != nil {
		t.Fatal(err)
	}
	// What the command writes: the shared namespace's step key, which the default branch restores.
	shared, _ := invocation(t, config.LevelBranch, save, fc)
	foreign := keyOf(t, shared, config.LevelStep)
	doc, err := json.Marshal(state{SaveKeys: []cachekey.Key{foreign}, Hit: cache.Miss})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inv.statePath(), doc, 0o600); err != nil {
		t.Fatal(err)
	}

	post, log := invocation(t, config.LevelBranch, save, fc)
	post.Job.Branch = "feature"
	if err := PostCommand(t.Context(), post); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(fc.savedNames(), foreign.Name) {
		t.Fatalf("saved the shared key %s from a tampered state", foreign.Name)
	}
	for _, n := range fc.savedNames() {
		if !strings.Contains(n, "/ns/branch-feature-") {
			t.Errorf("saved %s outside the branch's namespace", n)
		}
	}
	if !strings.Contains(log.String(), "ignoring the state from pre-command") {
		t.Errorf("log lacks the warning:\n%s", log)
	}
}
