package buildkite

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB",
		5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB", 2 << 40: "2.0 TiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
	if Rate(10<<20, 2*time.Second) != 5<<20 || Rate(1, 0) != 0 {
		t.Error("Rate")
	}
}

func TestLogConventions(t *testing.T) {
	var b bytes.Buffer
	l := NewLog(&b)
	l.Group("Restoring cache (%s level)", "file")
	l.Warnf("slow %d", 1)
	l.Errorf("broken")
	want := "--- :s3: Restoring cache (file level)\n^^^ +++\n:warning: s3-cache: slow 1\n+++ :rotating_light: s3-cache: broken\n"
	if b.String() != want {
		t.Fatalf("log:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestProgressLines(t *testing.T) {
	var b bytes.Buffer
	stop := NewLog(&b).Progress("Downloaded", func() int64 { return 50 << 20 }, 100<<20, 10*time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	stop()
	if !strings.Contains(b.String(), "Downloaded 50.0 MiB of 100.0 MiB (") || !strings.Contains(b.String(), "50%, ETA") {
		t.Fatalf("progress lines:\n%s", b.String())
	}
}

func TestJobFromEnv(t *testing.T) {
	t.Setenv("BUILDKITE_JOB_ID", "j")
	t.Setenv("BUILDKITE_ORGANIZATION_SLUG", "acme")
	t.Setenv("BUILDKITE_PIPELINE_SLUG", "")
	t.Setenv("BUILDKITE_STEP_KEY", "")
	t.Setenv("BUILDKITE_LABEL", ":npm: test")
	if _, err := JobFromEnv(); err == nil || !strings.Contains(err.Error(), "BUILDKITE_PIPELINE_SLUG") {
		t.Fatalf("missing pipeline: %v", err)
	}
	t.Setenv("BUILDKITE_PIPELINE_SLUG", "web")
	j, err := JobFromEnv()
	if err != nil || j.Step != ":npm: test" {
		t.Fatalf("job %+v, %v", j, err)
	}
	t.Setenv("BUILDKITE_STEP_KEY", "npm-test")
	if j, _ := JobFromEnv(); j.Step != "npm-test" {
		t.Fatalf("the step key does not win over the label: %+v", j)
	}
}

// A nil *Log in a Logger interface must discard, not panic.
func TestNilLogDiscards(t *testing.T) {
	var l *Log
	l.Infof("info %d", 1)
	l.Warnf("warning %d", 2)
	l.Errorf("error %d", 3)
	l.Group("group")
	l.Progress("Downloaded", func() int64 { return 0 }, 0, time.Millisecond)()
}

func TestJobFromEnvParallel(t *testing.T) {
	t.Setenv("BUILDKITE_JOB_ID", "j")
	t.Setenv("BUILDKITE_ORGANIZATION_SLUG", "acme")
	t.Setenv("BUILDKITE_PIPELINE_SLUG", "web")
	t.Setenv("BUILDKITE_STEP_ID", "step-uuid")
	for _, tc := range []struct {
		job, count  string
		index, jobs int
	}{
		{"", "", 0, 0},   // not parallel
		{"2", "4", 2, 4}, // the third of four jobs
		{"x", "4", 0, 4}, // a garbled index is the first
		{"1", "x", 0, 0}, // a garbled count: not parallel
	} {
		t.Setenv("BUILDKITE_PARALLEL_JOB", tc.job)
		t.Setenv("BUILDKITE_PARALLEL_JOB_COUNT", tc.count)
		j, err := JobFromEnv()
		if err != nil || j.StepID != "step-uuid" || j.ParallelJob != tc.index || j.ParallelJobs != tc.jobs {
			t.Errorf("BUILDKITE_PARALLEL_JOB=%q, _COUNT=%q: job %+v, %v; want %d of %d", tc.job, tc.count, j, err, tc.index, tc.jobs)
		}
	}
}

func TestPullRequests(t *testing.T) {
	const repo = "git@github.com:acme/web.git"
	for _, tc := range []struct {
		pr, prRepo string
		isPR, fork bool
	}{
		{"false", "", false, false},
		{"", "", false, false},
		{"12", "", true, false}, // no repository given: not known to be a fork
		{"12", repo, true, false},
		{"12", "https://github.com/acme/web.git", true, false},
		{"12", "git://github.com/Acme/web", true, false},
		{"12", "ssh://git@github.com:22/acme/web.git", true, false},
		{"12", "https://github.com/mallory/web.git", true, true},
		{"12", "git@github.com:acme/web-fork.git", true, true},
		{"12", "git@gitlab.com:acme/web.git", true, true},
	} {
		t.Setenv("BUILDKITE_JOB_ID", "j")
		t.Setenv("BUILDKITE_ORGANIZATION_SLUG", "acme")
		t.Setenv("BUILDKITE_PIPELINE_SLUG", "web")
		t.Setenv("BUILDKITE_REPO", repo)
		t.Setenv("BUILDKITE_PULL_REQUEST", tc.pr)
		t.Setenv("BUILDKITE_PULL_REQUEST_REPO", tc.prRepo)
		j, err := JobFromEnv()
		if err != nil {
			t.Fatal(err)
		}
		if j.IsPullRequest() != tc.isPR || j.IsFork() != tc.fork {
			t.Errorf("pull request %q from %q: pull request %v, fork %v; want %v, %v", tc.pr, tc.prRepo,
				j.IsPullRequest(), j.IsFork(), tc.isPR, tc.fork)
		}
	}
}
