package plugin

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/buildkite"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/s3"
)

func TestSkipForExitStatus(t *testing.T) {
	for _, tc := range []struct {
		when   config.When
		status string
		save   bool
	}{
		{config.WhenOnSuccess, "0", true},
		{config.WhenOnSuccess, "1", false},
		{config.WhenOnSuccess, "", true}, // no status: the agent ran no command to fail
		{config.WhenOnFailure, "0", false},
		{config.WhenOnFailure, "127", true},
		{config.WhenAlways, "0", true},
		{config.WhenAlways, "2", true},
	} {
		r := &Invocation{Config: &config.Config{When: tc.when}, Job: buildkite.Job{ExitStatus: tc.status}}
		if got := r.skipForExitStatus() == ""; got != tc.save {
			t.Errorf("when %s, exit status %q: save = %v, want %v", tc.when, tc.status, got, tc.save)
		}
	}
}

func TestWriteEnvFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "env")
	if err := writeEnvFile(p, map[string]string{OutputHit: "exact", OutputHitKey: "a/b.tar.zst"}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{OutputHit + "=exact\n", OutputHitKey + "=a/b.tar.zst\n"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("env file %q lacks %q", data, want)
		}
	}
	// A value that would break the shim's line-by-line export is refused, not written.
	if err := writeEnvFile(p, map[string]string{OutputHit: "x\nEVIL=1"}); err == nil {
		t.Error("a multi-line value was accepted")
	}
	if err := writeEnvFile(p, map[string]string{"lower-case": "x"}); err == nil {
		t.Error("an invalid variable name was accepted")
	}
}

// Two instances of the plugin in one step keep separate state; one instance in two jobs too.
func TestStatePathIsScopedToJobAndInstance(t *testing.T) {
	run := func(job string, paths ...string) string {
		return (&Invocation{Config: &config.Config{Paths: paths}, Job: buildkite.Job{ID: job}}).statePath()
	}
	a, b := run("job-1", "node_modules"), run("job-1", "vendor")
	if a == b || run("job-2", "node_modules") == a || run("job-1", "node_modules") != a {
		t.Fatalf("state paths: %s %s", a, b)
	}
	if strings.ContainsAny(filepath.Base(run("../../etc/x", "p")), "/") {
		t.Fatal("the job ID escapes the temp directory")
	}
}

func TestOverlappingPathsAreAConfigurationError(t *testing.T) {
	for _, paths := range [][]string{{"node_modules", "node_modules/.cache"}, {"a", "./a"}, {"~/.npm", "~"}} {
		r := &Invocation{Config: &config.Config{Paths: paths, Store: s3.Options{Bucket: "b"}}, Job: buildkite.Job{Dir: "/co", Home: "/home/u"},
			Log: buildkite.NewLog(io.Discard)}
		_, err := r.buildCache(t.Context())
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Key != "paths" {
			t.Errorf("paths %q: %v, want a configuration error", paths, err)
		}
	}
}

// A restore renames each path aside and deletes it: a path that holds the checkout or $HOME
// would take them with it. Such paths, "~" without a HOME and "~user" are configuration errors
// that name the path, before any S3 client exists.
func TestDangerousPathsAreAConfigurationError(t *testing.T) {
	tmp := t.TempDir()
	home := filepath.Join(tmp, "home")
	co := filepath.Join(home, "builds", "agent-1", "acme", "web")
	if err := os.MkdirAll(co, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(co, filepath.Join(tmp, "link-to-checkout")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, home, msg string
	}{
		{".", home, "checkout"},
		{"./", home, "checkout"},
		{"..", home, "checkout"},
		{co, home, "checkout"},
		{filepath.Dir(co), home, "checkout"},
		{"/", home, "root"},
		{"~", home, "HOME"},
		{filepath.Join(tmp, "link-to-checkout"), home, "checkout"},
		{"~/.npm", "", "HOME is not set"},
		{"~root/.npm", home, "~user is not supported"},
	} {
		r := &Invocation{Config: &config.Config{Paths: []string{tc.path}, Store: s3.Options{Bucket: "b"}}, Job: buildkite.Job{Dir: co, Home: tc.home},
			Log: buildkite.NewLog(io.Discard)}
		_, err := r.buildCache(t.Context())
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Key != "path" || !strings.Contains(err.Error(), strconv.Quote(tc.path)) ||
			!strings.Contains(err.Error(), tc.msg) {
			t.Errorf("path %q (HOME %q): %v; want a path error naming it and %q", tc.path, tc.home, err, tc.msg)
		}
	}
}

// A configuration the SDK cannot load (a profile that does not exist) fails the hook's cache
// with the SDK's error, before anything is restored or read: a runtime error.
func TestAStoreThatCannotBeSetUp(t *testing.T) {
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	inv := &Invocation{Config: &config.Config{Paths: []string{"node_modules"},
		Store: s3.Options{Bucket: "b", Endpoint: "http://127.0.0.1:1", Profile: "no-such-profile"}},
		Job: buildkite.Job{Dir: t.TempDir(), Home: t.TempDir()}, Log: buildkite.NewLog(io.Discard)}
	_, err := inv.openCache(t.Context())
	var ce *config.Error
	if err == nil || !strings.Contains(err.Error(), "no-such-profile") || errors.As(err, &ce) {
		t.Fatalf("open the cache: %v, want the SDK's error about no-such-profile, not a configuration error", err)
	}
}
