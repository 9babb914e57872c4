// Package e2e runs the hooks end to end, through the bash shims as buildkite-agent runs them,
// against real S3 servers: the race-proofing scenarios of docs/design.md#failure-model that need
// several jobs, signals, slow links or a server that dies.
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/s3test"
	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/treetest"
)

var (
	pluginDir string // the plugin checkout
	binDir    string // the hook binaries, built once
)

func TestMain(m *testing.M) {
	os.Exit(func() int {
		flag.Parse()
		if testing.Short() {
			// The whole package is the integration layer: every test runs the hooks against an
			// S3 server, so -short skips it here, before the hooks are built.
			fmt.Println("e2e: integration tests: need S3 servers and the hook binaries; run without -short")
			return 0
		}
		var err error
		pluginDir, err = filepath.Abs("../..")
		if err != nil {
			panic(err)
		}
		binDir, err = os.MkdirTemp("", "s3-cache-e2e-bin-")
		if err != nil {
			panic(err)
		}
		defer os.RemoveAll(binDir)
		build := exec.Command("go", "build", "-o", binDir+"/", "./cmd/pre-command", "./cmd/post-command", "./cmd/s3-cache")
		build.Dir, build.Env = pluginDir, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build the hooks: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}())
}

// agent is one Buildkite agent host: jobs on it share the verdict cache and temp directory.
type agent struct {
	t     *testing.T
	cache string // XDG_CACHE_HOME
	tmp   string // TMPDIR
}

func newAgent(t *testing.T) *agent {
	return &agent{t: t, cache: t.TempDir(), tmp: t.TempDir()}
}

// job is one Buildkite job: a checkout and the environment the agent gives the hooks.
type job struct {
	t        *testing.T
	plugin   string // the plugin checkout whose hooks run
	checkout string
	env      map[string]string
}

func (a *agent) job(srv *s3test.Server, name string) *job {
	j := &job{t: a.t, plugin: pluginDir, checkout: filepath.Join(a.t.TempDir(), name), env: map[string]string{
		"BUILDKITE_JOB_ID":                   name + "-" + randomHex(4),
		"BUILDKITE_ORGANIZATION_SLUG":        "acme",
		"BUILDKITE_PIPELINE_SLUG":            "web",
		"BUILDKITE_BRANCH":                   "main",
		"BUILDKITE_PIPELINE_DEFAULT_BRANCH":  "main",
		"BUILDKITE_LABEL":                    "test",
		"BUILDKITE_COMMAND_EXIT_STATUS":      "0",
		"S3_CACHE_BIN_DIR":                   binDir,
		"XDG_CACHE_HOME":                     a.cache,
		"TMPDIR":                             a.tmp,
		"BUILDKITE_PLUGIN_S3_CACHE_PATH":     "node_modules",
		"BUILDKITE_PLUGIN_S3_CACHE_MANIFEST": "package-lock.json",
		"BUILDKITE_PLUGIN_S3_CACHE_RESTORE":  "file",
		"BUILDKITE_PLUGIN_S3_CACHE_SAVE":     "file",
	}}
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		j.env[k] = v
	}
	must(a.t, os.MkdirAll(j.checkout, 0o755))
	must(a.t, os.WriteFile(filepath.Join(j.checkout, "package-lock.json"), []byte(`{"lockfileVersion": 3}`), 0o644))
	return j
}

// set sets plugin keys: set("FORCE", "true") sets BUILDKITE_PLUGIN_S3_CACHE_FORCE.
func (j *job) set(kv ...string) *job {
	for i := 0; i < len(kv); i += 2 {
		j.env["BUILDKITE_PLUGIN_S3_CACHE_"+kv[i]] = kv[i+1]
	}
	return j
}

// cacheDir is what the job caches: node_modules in its checkout.
func (j *job) cacheDir() string { return filepath.Join(j.checkout, "node_modules") }

// fill writes a tree of about size bytes into the job's cached directory.
func (j *job) fill(size int) *job {
	makeTree(j.t, j.cacheDir(), size)
	return j
}

// mustSave runs post-command and fails the test unless it stored the cache.
func (j *job) mustSave() {
	j.t.Helper()
	if out, code := j.run("post-command"); code != 0 || !strings.Contains(out, "\nSaved ") {
		j.t.Fatalf("save by %s: exit %d\n%s", j.env["BUILDKITE_JOB_ID"], code, out)
	}
}

// hook is a hook running as the agent runs it: sourced by bash, in the checkout, in its own
// process group (which is what the agent signals when a job is cancelled).
type hook struct {
	cmd   *exec.Cmd
	out   *syncBuffer
	done  chan struct{}
	code  int
	ended time.Time
}

func (j *job) start(name string) *hook {
	j.t.Helper()
	return j.startScript(`. "$1"`, name)
}

// startScript starts a bash script as start starts a hook, with the hook's path as $1: the
// script sources it and can then print what the hook exported to the job's command.
func (j *job) startScript(script, name string) *hook {
	j.t.Helper()
	cmd := exec.Command("bash", "-c", script, "_", filepath.Join(j.plugin, "hooks", name))
	cmd.Dir = j.checkout
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !strings.HasPrefix(k, "BUILDKITE_") && !strings.HasPrefix(k, "AWS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range j.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	h := &hook{cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = h.out, h.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	must(j.t, cmd.Start())
	go func() {
		_ = cmd.Wait()
		h.code, h.ended = cmd.ProcessState.ExitCode(), time.Now()
		close(h.done)
	}()
	return h
}

// run runs a hook to its end.
func (j *job) run(name string) (string, int) {
	h := j.start(name)
	return h.wait(j.t)
}

func (h *hook) wait(t *testing.T) (string, int) {
	t.Helper()
	select {
	case <-h.done:
	case <-time.After(5 * time.Minute):
		_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
		t.Fatalf("hook did not finish in 5 minutes:\n%s", h.out)
	}
	return h.out.String(), h.code
}

// terminate sends SIGTERM to the hook's process group, as the agent does on cancel.
func (h *hook) terminate() { _ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGTERM) }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// makeTree writes a tree like a node_modules: nested packages, an executable, a .bin symlink,
// and about size bytes of incompressible content.
func makeTree(t *testing.T, dir string, size int) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Join(dir, ".bin"), 0o755))
	for i := 0; size > 0; i++ {
		n := min(size, 4<<20)
		size -= n
		pkg := filepath.Join(dir, fmt.Sprintf("pkg%d", i))
		must(t, os.MkdirAll(filepath.Join(pkg, "lib"), 0o755))
		b := make([]byte, n)
		_, _ = rand.Read(b)
		must(t, os.WriteFile(filepath.Join(pkg, "lib", "blob.bin"), b, 0o644))
		must(t, os.WriteFile(filepath.Join(pkg, "cli.js"), []byte("#!/usr/bin/env node\n"), 0o755))
		must(t, os.Symlink(fmt.Sprintf("../pkg%d/cli.js", i), filepath.Join(dir, ".bin", fmt.Sprintf("pkg%d", i))))
	}
}

// linkTree copies src to dst with hard links: identical content and metadata, no disk cost.
func linkTree(t *testing.T, src, dst string) {
	t.Helper()
	must(t, filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, target)
		default:
			return os.Link(p, target)
		}
	}))
}

func listing(t *testing.T, dir string) string { return treetest.Listing(t, dir) }

// slowProxy puts a proxy limited to rate bytes per second in front of srv, and returns a
// channel closed at the first request that matches.
func slowProxy(t *testing.T, srv *s3test.Server, rate int64, match func(*http.Request) bool) (*s3test.Proxy, <-chan struct{}) {
	t.Helper()
	proxy, err := s3test.NewProxy(srv.Endpoint)
	must(t, err)
	t.Cleanup(proxy.Close)
	proxy.Throttle(rate)
	var once sync.Once
	seen := make(chan struct{})
	proxy.OnRequest(func(r *http.Request) {
		if match(r) {
			once.Do(func() { close(seen) })
		}
	})
	return proxy, seen
}

func isRangedGet(r *http.Request) bool {
	return r.Method == http.MethodGet && r.Header.Get("Range") != ""
}

func isUploadPart(r *http.Request) bool {
	return r.Method == http.MethodPut && r.URL.Query().Has("partNumber")
}

// objects lists the keys in the server's bucket.
func objects(t *testing.T, srv *s3test.Server) []string {
	t.Helper()
	out, err := srv.Client().ListObjectsV2(context.Background(), &awss3.ListObjectsV2Input{Bucket: aws.String(srv.Bucket)})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		if strings.HasPrefix(aws.ToString(o.Key), ".s3-cache-used/") {
			continue // last-use markers, which restores write (see usage_test.go): not caches
		}
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys
}

// stored says whether an object exists and answers HEAD (a listing can show an object that a
// server is still completing).
func stored(t *testing.T, srv *s3test.Server) bool {
	t.Helper()
	for _, k := range objects(t, srv) {
		if strings.Contains(k, ".s3-cache-probe/") {
			continue // the conditional-writes probe's objects come and go
		}
		if _, err := srv.Client().HeadObject(context.Background(), &awss3.HeadObjectInput{Bucket: aws.String(srv.Bucket), Key: aws.String(k)}); err == nil {
			return true
		}
	}
	return false
}

func uploadsInProgress(t *testing.T, srv *s3test.Server) int {
	t.Helper()
	out, err := srv.Client().ListMultipartUploads(context.Background(), &awss3.ListMultipartUploadsInput{Bucket: aws.String(srv.Bucket)})
	if err != nil {
		t.Fatal(err)
	}
	return len(out.Uploads)
}

// leftovers lists what the plugin left in a directory: staging, old trees, temp files.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	var found []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		// The user's private state directory stays (like tmux's); what is in it must not.
		if e.IsDir() && e.Name() == fmt.Sprintf("s3-cache-%d", os.Getuid()) {
			for _, f := range leftovers(t, filepath.Join(dir, e.Name())) {
				found = append(found, e.Name()+"/"+f)
			}
			continue
		}
		if strings.Contains(e.Name(), "s3-cache") {
			found = append(found, e.Name())
		}
	}
	return found
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// waitFor polls cond until it holds or a minute passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
