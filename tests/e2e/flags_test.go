package e2e

import (
	"net/http"
	"strings"
	"testing"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/s3test"
)

// The options users of other caches expect (lookup-only, fail-on-cache-miss, restore: false,
// save: false), through the shims against versitygw, with a recording proxy in front of it to
// show what each hook asked of the server.

// recorder puts a recording proxy in front of srv.
func recorder(t *testing.T, srv *s3test.Server) *s3test.Proxy {
	t.Helper()
	proxy, err := s3test.NewProxy(srv.Endpoint)
	must(t, err)
	t.Cleanup(proxy.Close)
	return proxy
}

// methods counts the requests the proxy saw, by method.
func methods(p *s3test.Proxy) map[string]int {
	n := map[string]int{}
	for _, r := range p.Requests() {
		n[r.Method]++
	}
	return n
}

// exports runs pre-command and prints what it exported to the command.
func (j *job) exports() (string, int) {
	j.t.Helper()
	// An EXIT trap: the hook sets -e, so a failing hook ends the script.
	return j.startScript(`trap 'echo "HIT=${BUILDKITE_PLUGIN_S3_CACHE_HIT-unset} KEY=${BUILDKITE_PLUGIN_S3_CACHE_HIT_KEY-}"' EXIT; . "$1"`,
		"pre-command").wait(j.t)
}

// Lookup-only finds an existing key with HEAD requests alone (0 bytes downloaded), exports
// HIT=exact and its key, leaves the job's tree as it was, and post-command saves nothing.
func TestLookupOnlyDownloadsNothing(t *testing.T) {
	srv := s3test.StartT(t, s3test.Versitygw)
	a := newAgent(t)
	a.job(srv, "saver").fill(2 << 20).mustSave()
	keys := objects(t, srv)
	if len(keys) != 1 {
		t.Fatalf("objects %q, want one", keys)
	}

	proxy := recorder(t, srv)
	j := a.job(srv, "looker").set("ENDPOINT", proxy.URL, "LOOKUP_ONLY", "true", "RESTORE", "pipeline")
	j.fill(1 << 10)
	before := listing(t, j.cacheDir())
	out, code := j.exports()
	if code != 0 || !strings.Contains(out, "HIT=exact KEY="+keys[0]+"\n") {
		t.Fatalf("pre-command exited %d, want 0 exporting HIT=exact KEY=%s:\n%s", code, keys[0], out)
	}
	if m := methods(proxy); m[http.MethodHead] != 1 || len(m) != 1 {
		t.Fatalf("requests by method %v, want one HEAD and nothing else:\n%s", m, out)
	}
	if got := listing(t, j.cacheDir()); got != before {
		t.Fatalf("lookup-only changed the job's tree:\n%s", out)
	}
	if l := leftovers(t, j.checkout); len(l) != 0 {
		t.Fatalf("lookup-only left %q in the checkout", l)
	}

	out, code = j.run("post-command")
	if code != 0 || !strings.Contains(out, "Lookup-only found an exact hit of "+keys[0]+" and restored nothing: nothing to save") {
		t.Fatalf("post-command exited %d:\n%s", code, out)
	}
	if m := methods(proxy); m[http.MethodHead] != 1 || len(m) != 1 {
		t.Fatalf("requests by method %v after post-command, want still one HEAD", m)
	}
}

// fail-on-cache-miss fails pre-command with exit 1 and one line naming the keys on a miss, and
// on a restore that failed, even with soft-fail on; a hit passes.
func TestFailOnCacheMiss(t *testing.T) {
	srv := s3test.StartT(t, s3test.Versitygw)
	a := newAgent(t)
	for _, tc := range []struct {
		name string
		env  []string
		why  string
	}{
		{"miss", nil, "no cache at any of the keys"},
		{"lookup-only miss", []string{"LOOKUP_ONLY", "true"}, "no cache at any of the keys"},
		{"failed restore", []string{"ENDPOINT", "http://127.0.0.1:9", "RETRIES", "1"}, "the restore failed ("},
	} {
		j := a.job(srv, "miss").set("FAIL_ON_CACHE_MISS", "true", "SOFT_FAIL", "true", "RESTORE", "step").set(tc.env...)
		out, code := j.exports()
		if code != 1 || !strings.Contains(out, "HIT=miss") {
			t.Fatalf("%s: pre-command exited %d, want 1 with HIT=miss:\n%s", tc.name, code, out)
		}
		i := strings.Index(out, "+++ :rotating_light: s3-cache: cache miss and fail-on-cache-miss is on: "+tc.why)
		if i < 0 {
			t.Fatalf("%s: no failure line saying %q:\n%s", tc.name, tc.why, out)
		}
		line, _, _ := strings.Cut(out[i:], "\n")
		if !strings.Contains(line, "; tried acme/web/file/") || !strings.Contains(line, ".tar.zst, acme/web/step/test/") {
			t.Fatalf("%s: the failure line does not name the file and step keys: %q", tc.name, line)
		}
	}

	a.job(srv, "saver").fill(1 << 10).mustSave()
	for _, lookup := range []string{"false", "true"} {
		out, code := a.job(srv, "hit").set("FAIL_ON_CACHE_MISS", "true", "LOOKUP_ONLY", lookup).exports()
		if code != 0 || !strings.Contains(out, "HIT=exact") {
			t.Fatalf("lookup-only %s: pre-command exited %d on a hit, want 0:\n%s", lookup, code, out)
		}
	}
}

// save: false (a read-only step) restores and never writes; restore: false (save only) saves and
// never reads an object.
func TestSaveFalseAndRestoreFalse(t *testing.T) {
	srv := s3test.StartT(t, s3test.Versitygw)
	a := newAgent(t)

	proxy := recorder(t, srv)
	ro := a.job(srv, "read-only").set("ENDPOINT", proxy.URL, "SAVE", "false")
	ro.fill(1 << 10)
	for _, hook := range []string{"pre-command", "post-command"} {
		if out, code := ro.run(hook); code != 0 {
			t.Fatalf("read-only %s exited %d:\n%s", hook, code, out)
		}
	}
	// The restore's HEAD of each candidate, and the one listing of the newest-match fallback
	// (a GET of the bucket); nothing that writes.
	if m := methods(proxy); m[http.MethodHead] != 1 || m[http.MethodGet] != 1 || len(m) != 2 {
		t.Fatalf("read-only step: requests by method %v, want one HEAD, one listing and no write", m)
	}
	for _, r := range proxy.Requests() {
		if r.Method == http.MethodGet && r.Query.Get("list-type") != "2" {
			t.Fatalf("read-only step downloaded: %s %s", r.Method, r.Path)
		}
	}
	if keys := objects(t, srv); len(keys) != 0 {
		t.Fatalf("read-only step stored %q", keys)
	}
	if l := leftovers(t, a.tmp); len(l) != 0 {
		t.Fatalf("read-only step left %q", l)
	}

	a.job(srv, "saver").fill(1 << 10).mustSave()
	proxy = recorder(t, srv)
	wo := a.job(srv, "save-only").set("ENDPOINT", proxy.URL, "RESTORE", "false")
	wo.fill(1 << 10)
	before := listing(t, wo.cacheDir())
	out, code := wo.exports()
	if code != 0 || !strings.Contains(out, "HIT=unset") || len(proxy.Requests()) != 0 {
		t.Fatalf("save-only pre-command exited %d after %d request(s), want 0, none, and no HIT exported:\n%s",
			code, len(proxy.Requests()), out)
	}
	if got := listing(t, wo.cacheDir()); got != before {
		t.Fatal("save-only pre-command changed the job's tree")
	}
	out, code = wo.run("post-command")
	if code != 0 || !strings.Contains(out, "Cache already saved at ") {
		t.Fatalf("save-only post-command exited %d, want 0 finding the object saved:\n%s", code, out)
	}
	if m := methods(proxy); m[http.MethodGet] != 0 || m[http.MethodHead] != 1 {
		t.Fatalf("save-only step: requests by method %v, want one HEAD and no GET", m)
	}
}
