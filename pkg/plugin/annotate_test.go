package plugin

// The annotate key, with a stub buildkite-agent on PATH that records each call's arguments and
// the Markdown it reads from stdin. The bats test tests/annotate.bats runs it through the shims.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/archive"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/buildkite"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cache"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cachekey"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
)

// agentStub puts a buildkite-agent on PATH that runs body after recording its call: the
// arguments as a line of dir/calls, stdin as dir/body.<n> (n from 0).
type agentStub struct{ dir string }

func stubAgent(t *testing.T, body string) agentStub {
	t.Helper()
	dir := t.TempDir()
	script := fmt.Sprintf(`#!/bin/sh
n=$(cat %[1]q/calls 2>/dev/null | wc -l)
echo "$*" >>%[1]q/calls
cat >%[1]q/body.$n
%[2]s
`, dir, body)
	if err := os.WriteFile(filepath.Join(dir, "buildkite-agent"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return agentStub{dir}
}

// calls lists the argument lines of every call, and bodies what each read from stdin.
func (s agentStub) calls(t *testing.T) (args, bodies []string) {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(s.dir, "calls"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		t.Fatal(err)
	}
	args = strings.Split(strings.TrimSuffix(string(doc), "\n"), "\n")
	for i := range args {
		b, err := os.ReadFile(filepath.Join(s.dir, fmt.Sprintf("body.%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, string(b))
	}
	return args, bodies
}

// movingCache is fakeCache with the facts of real transfers: each hit and save moved size bytes
// of entries entries in took.
type movingCache struct {
	*fakeCache
	size, entries int64
	took          time.Duration
}

func (m *movingCache) open(context.Context) (hookCache, error) { m.opened++; return m, nil }

func (m *movingCache) Restore(ctx context.Context, candidates []cachekey.Key) (cache.Restored, error) {
	r, err := m.fakeCache.Restore(ctx, candidates)
	if r.Hit != cache.Miss {
		r.Size, r.Stats, r.Duration = m.size, archive.Stats{Entries: m.entries}, m.took
	}
	return r, err
}

func (m *movingCache) Save(ctx context.Context, keys []cachekey.Key) ([]cache.Saved, error) {
	saved, err := m.fakeCache.Save(ctx, keys)
	for i, k := range keys {
		saved[i] = cache.Saved{Key: k, Stored: err == nil, Size: m.size, Stats: archive.Stats{Entries: m.entries}, Duration: m.took}
	}
	return saved, err
}

var contextArgs = regexp.MustCompile(`^annotate --context (s3-cache-[0-9a-f]{16}) --style info --append$`)

// A restore and a save each append a table with their rows to the instance's annotation.
func TestAnnotateAppendsARowPerRestoreAndSave(t *testing.T) {
	isolate(t)
	stub := stubAgent(t, "")
	mc := &movingCache{fakeCache: &fakeCache{hitAt: 0}, size: 3 << 20, entries: 42, took: 1500 * time.Millisecond}
	save := []config.Level{config.LevelStep, config.LevelBranch}
	pre, _ := invocation(t, config.LevelBranch, save, mc.fakeCache)
	pre.newCache, pre.Config.Annotate = mc.open, true
	if err := PreCommand(t.Context(), pre); err != nil {
		t.Fatal(err)
	}
	post, log := invocation(t, config.LevelBranch, save, mc.fakeCache)
	post.newCache, post.Config.Annotate = mc.open, true
	if err := PostCommand(t.Context(), post); err != nil {
		t.Fatal(err)
	}

	args, bodies := stub.calls(t)
	if len(args) != 2 {
		t.Fatalf("buildkite-agent ran %d time(s), want 2 (a restore, a save): %q", len(args), args)
	}
	for _, a := range args {
		if m := contextArgs.FindStringSubmatch(a); m == nil || m[1] != pre.annotationContext() {
			t.Fatalf("buildkite-agent %s: want annotate --context %s --style info --append", a, pre.annotationContext())
		}
	}
	header := "| s3-cache `node_modules` | level | result | size | entries | time | throughput |\n|:--|:--|:--|--:|--:|--:|--:|\n"
	want := []string{
		"\n" + header + "| restore | step | exact hit | 3.0 MiB | 42 | 1.5s | 2.0 MiB/s |\n",
		"\n" + header + "| save | step | not saved: restored as an exact hit | — | — | — | — |\n" +
			"| save | branch | saved | 3.0 MiB | 42 | 1.5s | 2.0 MiB/s |\n",
	}
	for i := range want {
		if bodies[i] != want[i] {
			t.Errorf("annotation %d:\n%s\nwant:\n%s", i, bodies[i], want[i])
		}
	}
	// The log keeps its one-line summary; the annotation adds to it.
	if strings.Contains(log.String(), "warning") {
		t.Errorf("log has a warning:\n%s", log)
	}
}

// A miss, a failed restore and a save the command's outcome skipped are rows too.
func TestAnnotateRowsWithoutATransfer(t *testing.T) {
	for _, tc := range []struct {
		name string
		fc   *fakeCache
		hook Hook
		exit string
		row  *regexp.Regexp
	}{
		{"miss", &fakeCache{hitAt: -1}, PreCommand, "0", regexp.MustCompile(`\n\| restore \| — \| miss \| — \| — \| [0-9.]+[mµn]?s \| — \|\n$`)},
		{"failed restore", &fakeCache{restoreErr: errors.New("boom")}, PreCommand, "0",
			regexp.MustCompile(`\n\| restore \| — \| failed \(see the log\) \| — \| — \| [0-9.]+[mµn]?s \| — \|\n$`)},
		{"failed save", &fakeCache{hitAt: -1, saveErr: errors.New("denied")}, PostCommand, "0",
			regexp.MustCompile(`\n\| save \| step \| failed \(see the log\) \| — \| — \| — \| — \|\n$`)},
		{"failed command", &fakeCache{hitAt: -1}, PostCommand, "2",
			regexp.MustCompile(`\n\| save \| — \| not saved: The command failed \(exit status 2\) and when is on-success \| — \| — \| — \| — \|\n$`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			isolate(t)
			stub := stubAgent(t, "")
			inv, _ := invocation(t, config.LevelStep, []config.Level{config.LevelStep}, tc.fc)
			inv.Config.Annotate, inv.Job.ExitStatus = true, tc.exit
			if tc.fc.saveErr != nil { // a failed save returns what it knows of each key, as cache.Save does
				inv.newCache = (&failingSaves{tc.fc}).open
			}
			_ = tc.hook(t.Context(), inv)
			_, bodies := stub.calls(t)
			if len(bodies) != 1 || !tc.row.MatchString(bodies[0]) {
				t.Fatalf("annotations %q, want one ending in a row matching %s", bodies, tc.row)
			}
		})
	}
}

// failingSaves is fakeCache whose failed saves report their keys, as cache.Save does.
type failingSaves struct{ *fakeCache }

func (f *failingSaves) open(context.Context) (hookCache, error) { f.opened++; return f, nil }

func (f *failingSaves) Save(ctx context.Context, keys []cachekey.Key) ([]cache.Saved, error) {
	saved, err := f.fakeCache.Save(ctx, keys)
	for i, k := range keys {
		saved[i].Key = k
	}
	return saved, err
}

// Every job of a step, parallel or retried, appends to one annotation per plugin instance, its
// rows labelled with the job; another step or instance has its own.
func TestAnnotationContextIsPerStepAndInstance(t *testing.T) {
	ctxOf := func(job buildkite.Job, paths ...string) string {
		return (&Invocation{Config: &config.Config{Paths: paths}, Job: job}).annotationContext()
	}
	first := buildkite.Job{ID: "job-1", StepID: "step-a", Step: "deps", ParallelJob: 0, ParallelJobs: 3}
	second := buildkite.Job{ID: "job-2", StepID: "step-a", Step: "deps", ParallelJob: 1, ParallelJobs: 3}
	a := ctxOf(first, "node_modules")
	for _, tc := range []struct {
		name string
		got  string
		same bool
	}{
		{"another job of the step", ctxOf(second, "node_modules"), true},
		{"another instance in the step", ctxOf(first, "vendor"), false},
		{"another step", ctxOf(buildkite.Job{ID: "job-3", StepID: "step-b", Step: "deps"}, "node_modules"), false},
		{"an agent without step IDs", ctxOf(buildkite.Job{ID: "job-1", Step: "deps"}, "node_modules"), false},
	} {
		if (tc.got == a) != tc.same {
			t.Errorf("%s: context %s, first job's %s; want same = %v", tc.name, tc.got, a, tc.same)
		}
	}
	if len(a) > 100 || !strings.HasPrefix(a, "s3-cache-") {
		t.Errorf("context %q", a)
	}
	md := annotationMarkdown([]string{"node_modules", "~/.npm", "a|b"}, second, []summaryRow{{op: "restore", result: "miss"}})
	for _, want := range []string{"| s3-cache `node_modules` `~/.npm` `a\\|b` |", "\n| restore (job 2 of 3) | — | miss |"} {
		if !strings.Contains(md, want) {
			t.Errorf("annotation lacks %q:\n%s", want, md)
		}
	}
}

// Without the key, or without buildkite-agent on PATH, nothing runs and nothing is said.
func TestAnnotateRunsOnlyWhenAskedAndPossible(t *testing.T) {
	for _, tc := range []struct {
		name     string
		annotate bool
		onPath   bool
	}{
		{"annotate off", false, true},
		{"no buildkite-agent", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			isolate(t)
			stub := stubAgent(t, "")
			if !tc.onPath {
				t.Setenv("PATH", t.TempDir())
			}
			fc := &fakeCache{hitAt: -1}
			inv, log := invocation(t, config.LevelStep, []config.Level{config.LevelStep}, fc)
			inv.Config.Annotate = tc.annotate
			if err := PreCommand(t.Context(), inv); err != nil {
				t.Fatal(err)
			}
			post, postLog := invocation(t, config.LevelStep, []config.Level{config.LevelStep}, fc)
			post.Config.Annotate = tc.annotate
			if err := PostCommand(t.Context(), post); err != nil {
				t.Fatal(err)
			}
			if args, _ := stub.calls(t); len(args) != 0 {
				t.Fatalf("buildkite-agent ran: %q", args)
			}
			if out := log.String() + postLog.String(); strings.Contains(out, "annotat") {
				t.Fatalf("the log mentions annotations:\n%s", out)
			}
		})
	}
}

// A failing agent is a warning that says why, even with soft-fail off: the hook exits 0.
func TestFailingAgentIsAWarning(t *testing.T) {
	stub := stubAgent(t, `echo "fatal: Failed to annotate build: POST 401 Unauthorized" >&2; exit 1`)
	mainEnv(t, "PATH", "node_modules", "BUCKET", "b", "RESTORE", "step", "SAVE", "step", "SOFT_FAIL", "false", "ANNOTATE", "true")
	var out bytes.Buffer
	fc := &fakeCache{hitAt: -1}
	if got := run("pre-command", PreCommand, nil, &out, fc.open); got != 0 {
		t.Fatalf("exit status %d, want 0; log:\n%s", got, out.String())
	}
	want := ":warning: s3-cache: could not annotate the build (buildkite-agent annotate): exit status 1: fatal: Failed to annotate build: POST 401 Unauthorized\n"
	if !strings.Contains(out.String(), want) {
		t.Fatalf("log lacks %q:\n%s", want, out.String())
	}
	if args, _ := stub.calls(t); len(args) != 1 {
		t.Fatalf("buildkite-agent ran %d time(s), want 1", len(args))
	}
}

// An agent that does not answer is stopped when the job is cancelled (or after annotateTimeout):
// the hook does not wait for it.
func TestHangingAgentIsStopped(t *testing.T) {
	isolate(t)
	stub := stubAgent(t, "exec sleep 60")
	fc := &fakeCache{hitAt: -1}
	inv, log := invocation(t, config.LevelStep, nil, fc)
	inv.Config.Annotate = true
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// Cancel once the stub has started: annotate skips a job already cancelled.
	go func() {
		for ctx.Err() == nil {
			if _, err := os.Stat(filepath.Join(stub.dir, "calls")); err == nil {
				cancel()
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	start := time.Now()
	_ = PreCommand(ctx, inv)
	if took := time.Since(start); took > annotateTimeout {
		t.Fatalf("the hook waited %s for a hanging agent", took)
	}
	if !strings.Contains(log.String(), "could not annotate the build (buildkite-agent annotate): context canceled") {
		t.Fatalf("log lacks the warning:\n%s", log)
	}
}

// A warm hit moved nothing: its row says so and shows no size or throughput.
func TestRestoreRowOfAWarmHit(t *testing.T) {
	for _, tc := range []struct {
		warm   bool
		result string
		moved  bool
	}{
		{false, "exact hit", true},
		{true, "exact hit (already in place, nothing downloaded)", false},
	} {
		r := restoreRow(cache.Restored{Hit: cache.Exact, Key: cachekey.Key{Level: config.LevelFile}, Warm: tc.warm, Duration: time.Second}, nil, 0)
		if r.result != tc.result || r.moved != tc.moved {
			t.Errorf("warm %t: row %+v, want result %q, moved %t", tc.warm, r, tc.result, tc.moved)
		}
	}
}
