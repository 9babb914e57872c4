package e2e

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/s3test"
)

// The release path of docs/design.md#shim-resolution-and-trust: an agent with no Go toolchain
// runs s3-cache/s3-cache#vX.Y.Z; the hook downloads the release binary for its platform,
// verifies it against checksums.txt, caches it, and runs it. These tests serve goreleaser's
// snapshot build (dist/) from a loopback server.

const releaseVersion = "v9.9.9-test"

var assetName = regexp.MustCompile(`^(pre-command|post-command|s3-cache)_(linux|darwin|windows)_(amd64|arm64)(\.exe)?$`)

// release is a copy of dist/ served at <URL>/<version>/<asset>, counting requests.
type release struct {
	dir      string
	URL      string
	requests atomic.Int64
}

func serveRelease(t *testing.T) *release {
	t.Helper()
	dist := filepath.Join(pluginDir, "dist")
	if _, err := os.Stat(filepath.Join(dist, "checksums.txt")); err != nil {
		t.Fatalf("no release build in %s: run `make snapshot` (goreleaser release --snapshot --clean) first", dist)
	}
	// goreleaser lists the release assets, with their published names, in artifacts.json.
	doc, err := os.ReadFile(filepath.Join(dist, "artifacts.json"))
	must(t, err)
	var artifacts []struct{ Name, Path, Type string }
	must(t, json.Unmarshal(doc, &artifacts))
	r := &release{dir: t.TempDir()}
	assets := 0
	for _, a := range artifacts {
		if (a.Type == "Binary" && assetName.MatchString(a.Name)) || a.Type == "Checksum" {
			data, err := os.ReadFile(filepath.Join(pluginDir, a.Path))
			must(t, err)
			must(t, os.WriteFile(filepath.Join(r.dir, a.Name), data, 0o644))
			assets++
		}
	}
	if assets != 19 { // pre-command, post-command and s3-cache on six platforms
		t.Fatalf("dist/ has %d assets, want 18 binaries and checksums.txt", assets)
	}
	files := http.StripPrefix("/"+releaseVersion, http.FileServer(http.Dir(r.dir)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.requests.Add(1)
		files.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

func asset(hook string) string {
	name := fmt.Sprintf("%s_%s_%s", hook, runtime.GOOS, runtime.GOARCH)
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	return name
}

// releasedPlugin is a clean checkout of a released plugin version: the hooks, the shim, the
// plugin.yml and a VERSION file, and no Go code to build.
func releasedPlugin(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, sub := range []string{"hooks", "lib"} {
		must(t, os.CopyFS(filepath.Join(dir, sub), os.DirFS(filepath.Join(pluginDir, sub))))
	}
	must(t, os.Chmod(filepath.Join(dir, "hooks", "pre-command"), 0o755))
	must(t, os.Chmod(filepath.Join(dir, "hooks", "post-command"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "VERSION"), []byte(releaseVersion+"\n"), 0o644))
	return dir
}

// pathWithoutGo is a PATH holding only the tools the shim uses, so no Go toolchain is found.
func pathWithoutGo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, tool := range []string{"bash", "curl", "sha256sum", "awk", "mkdir", "mktemp", "mv", "rm", "chmod",
		"cat", "tr", "git", "cut", "env", "kill", "stat"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			if tool == "kill" {
				continue // a bash builtin
			}
			t.Fatalf("the release tests need %s: %v", tool, err)
		}
		must(t, os.Symlink(p, filepath.Join(dir, tool)))
	}
	if _, err := exec.LookPath(filepath.Join(dir, "go")); err == nil {
		t.Fatal("go is on the test PATH")
	}
	return dir
}

// releaseJob is a job on an agent without Go, using the released plugin checkout.
func releaseJob(t *testing.T, a *agent, srv *s3test.Server, plugin, path, binCache string, rel *release, name string) *job {
	j := a.job(srv, name)
	delete(j.env, "S3_CACHE_BIN_DIR")
	j.env["PATH"] = path
	j.env["S3_CACHE_DOWNLOAD_URL"] = rel.URL
	j.env["S3_CACHE_BINARY_CACHE"] = binCache
	j.plugin = plugin
	return j
}

// cachedBinary is where the shim caches hook's binary downloaded from rel: below the download
// base (bytes other than letters, digits, . and - escaped as _<hex>), the version and platform.
func cachedBinary(binCache string, rel *release, hook string) string {
	var source strings.Builder
	for _, b := range []byte(rel.URL) {
		if b == '.' || b == '-' || (b >= '0' && b <= '9') || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') {
			source.WriteByte(b)
		} else {
			fmt.Fprintf(&source, "_%02x", b)
		}
	}
	return filepath.Join(binCache, source.String(), releaseVersion, runtime.GOOS+"_"+runtime.GOARCH, hook)
}

func sha(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	must(t, err)
	return fmt.Sprintf("%x", sha256.Sum256(data))
}

func TestReleasedBinaryIsDownloadedVerifiedAndCached(t *testing.T) {
	srv := s3test.StartT(t, s3test.Versitygw)
	rel := serveRelease(t)
	plugin, path, binCache := releasedPlugin(t), pathWithoutGo(t), t.TempDir()
	a := newAgent(t)

	first := releaseJob(t, a, srv, plugin, path, binCache, rel, "first")
	first.fill(1 << 20)
	out, code := first.run("pre-command")
	if code != 0 || !strings.Contains(out, "Cache miss") {
		t.Fatalf("pre-command with a downloaded binary: %d\n%s", code, out)
	}
	out, code = first.run("post-command")
	if code != 0 || !strings.Contains(out, "\nSaved ") {
		t.Fatalf("post-command with a downloaded binary: %d\n%s", code, out)
	}
	if n := rel.requests.Load(); n != 4 {
		t.Fatalf("%d requests to the release server, want 4 (two binaries and their checksums)", n)
	}
	for _, hook := range []string{"pre-command", "post-command"} {
		if sha(t, cachedBinary(binCache, rel, hook)) != sha(t, filepath.Join(rel.dir, asset(hook))) {
			t.Fatalf("the cached %s is not the released one", hook)
		}
	}

	second := releaseJob(t, a, srv, plugin, path, binCache, rel, "second")
	out, code = second.run("pre-command")
	if code != 0 || !strings.Contains(out, "Cache hit (exact") {
		t.Fatalf("second job: %d\n%s", code, out)
	}
	if n := rel.requests.Load(); n != 4 {
		t.Fatalf("the second job made %d more requests to the release server, want none", n-4)
	}
}

func TestTamperedReleasesAreRefused(t *testing.T) {
	srv := s3test.StartT(t, s3test.Versitygw)
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, dir string)
		says   string
	}{
		{"tampered binary", func(t *testing.T, dir string) {
			p := filepath.Join(dir, asset("pre-command"))
			data, err := os.ReadFile(p)
			must(t, err)
			data[len(data)/2] ^= 0xff
			must(t, os.WriteFile(p, data, 0o644))
		}, "its SHA-256 is"},
		{"tampered checksums.txt", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "checksums.txt")
			data, err := os.ReadFile(p)
			must(t, err)
			var lines []string
			for _, l := range strings.Split(string(data), "\n") {
				if strings.HasSuffix(l, " "+asset("pre-command")) {
					l = strings.Repeat("0", 64) + l[64:]
				}
				lines = append(lines, l)
			}
			must(t, os.WriteFile(p, []byte(strings.Join(lines, "\n")), 0o644))
		}, "but checksums.txt of " + releaseVersion + " says " + strings.Repeat("0", 64)},
		{"no entry in checksums.txt", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "checksums.txt")
			data, err := os.ReadFile(p)
			must(t, err)
			var lines []string
			for _, l := range strings.Split(string(data), "\n") {
				if !strings.HasSuffix(l, " "+asset("pre-command")) {
					lines = append(lines, l)
				}
			}
			must(t, os.WriteFile(p, []byte(strings.Join(lines, "\n")), 0o644))
		}, "has no entry for it"},
		{"no checksums.txt", func(t *testing.T, dir string) {
			must(t, os.Remove(filepath.Join(dir, "checksums.txt")))
		}, "cannot download " + "%s/" + releaseVersion + "/checksums.txt to verify it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rel := serveRelease(t)
			tc.tamper(t, rel.dir)
			plugin, path, binCache := releasedPlugin(t), pathWithoutGo(t), t.TempDir()
			j := releaseJob(t, newAgent(t), srv, plugin, path, binCache, rel, "job")
			out, code := j.run("pre-command") // soft-fail is on: it does not soften this
			says := tc.says
			if strings.Contains(says, "%s") {
				says = fmt.Sprintf(says, rel.URL)
			}
			if code == 0 || !strings.Contains(out, "refusing to run "+asset("pre-command")) || !strings.Contains(out, says) ||
				!strings.Contains(out, "failed verification and was not run") {
				t.Fatalf("exit %d, want non-zero and a message containing %q:\n%s", code, says, out)
			}
			if tc.name == "tampered binary" && !strings.Contains(out, sha(t, filepath.Join(rel.dir, asset("pre-command")))) {
				t.Fatalf("the message does not name the download's digest:\n%s", out)
			}
			var cached []string
			_ = filepath.WalkDir(binCache, func(p string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					cached = append(cached, p)
				}
				return nil
			})
			if len(cached) != 0 {
				t.Fatalf("refused binary left in the cache: %q", cached)
			}
		})
	}
}

func TestSixteenJobsResolveTheBinaryAtOnce(t *testing.T) {
	srv := s3test.StartT(t, s3test.Versitygw)
	rel := serveRelease(t)
	plugin, path, binCache := releasedPlugin(t), pathWithoutGo(t), t.TempDir()
	a := newAgent(t)
	const n = 16
	var wg sync.WaitGroup
	outs, codes := make([]string, n), make([]int, n)
	hooks := make([]*hook, n)
	for i := range n {
		hooks[i] = releaseJob(t, a, srv, plugin, path, binCache, rel, fmt.Sprintf("job%d", i)).start("pre-command")
	}
	for i, h := range hooks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], codes[i] = h.wait(t)
		}()
	}
	wg.Wait()
	for i := range n {
		if codes[i] != 0 || !strings.Contains(outs[i], "Cache miss") {
			t.Fatalf("job %d: %d\n%s", i, codes[i], outs[i])
		}
	}
	dir := filepath.Dir(cachedBinary(binCache, rel, "pre-command"))
	entries, err := os.ReadDir(dir)
	must(t, err)
	var names []string
	for _, e := range entries {
		if e.Name() != "pre-command.verified" { // the note of a check, if a job was late enough
			names = append(names, e.Name())
		}
	}
	if strings.Join(names, " ") != "pre-command pre-command.sha256" {
		t.Fatalf("cache holds %q, want exactly one pre-command and its SHA-256", names)
	}
	if sha(t, filepath.Join(dir, "pre-command")) != sha(t, filepath.Join(rel.dir, asset("pre-command"))) {
		t.Fatal("the cached binary is not intact")
	}
}

// fork turns rel into another build of the same tag, as a fork would publish with its own download
// base: its pre-command is a script that says it ran, listed in its checksums.txt.
func (rel *release) fork(t *testing.T) {
	t.Helper()
	script := []byte("#!/bin/sh\necho fork binary ran\n")
	must(t, os.WriteFile(filepath.Join(rel.dir, asset("pre-command")), script, 0o644))
	p := filepath.Join(rel.dir, "checksums.txt")
	data, err := os.ReadFile(p)
	must(t, err)
	lines := strings.Split(string(data), "\n")
	for i, l := range lines {
		if strings.HasSuffix(l, "  "+asset("pre-command")) {
			lines[i] = fmt.Sprintf("%x  %s", sha256.Sum256(script), asset("pre-command"))
		}
	}
	must(t, os.WriteFile(p, []byte(strings.Join(lines, "\n")), 0o644))
}

// A fork's build of the same version, downloaded from its own base, is never run for the plugin
// released elsewhere: the cache is keyed by the download base as well as the version.
func TestReleaseBuildsOfOneVersionFromTwoSourcesAreCachedApart(t *testing.T) {
	srv := s3test.StartT(t, s3test.Versitygw)
	forked, real := serveRelease(t), serveRelease(t)
	forked.fork(t)
	plugin, path, binCache := releasedPlugin(t), pathWithoutGo(t), t.TempDir()
	a := newAgent(t)

	out, code := releaseJob(t, a, srv, plugin, path, binCache, forked, "fork").run("pre-command")
	if code != 0 || !strings.Contains(out, "fork binary ran") {
		t.Fatalf("the fork's job: %d\n%s", code, out)
	}
	out, code = releaseJob(t, a, srv, plugin, path, binCache, real, "real").run("pre-command")
	if code != 0 || strings.Contains(out, "fork binary ran") || !strings.Contains(out, "Cache miss") {
		t.Fatalf("the real plugin's job ran the fork's binary, or failed: %d\n%s", code, out)
	}
	if n := real.requests.Load(); n != 2 {
		t.Fatalf("%d requests to the real release server, want 2 (the binary and its checksums)", n)
	}
	if sha(t, cachedBinary(binCache, real, "pre-command")) != sha(t, filepath.Join(real.dir, asset("pre-command"))) {
		t.Fatal("the real plugin's cached binary is not its release")
	}
}

// A cached binary whose bytes changed after it was verified is not run: it is downloaded again.
func TestReleaseBinaryTamperedInTheCacheIsDownloadedAgain(t *testing.T) {
	srv := s3test.StartT(t, s3test.Versitygw)
	rel := serveRelease(t)
	plugin, path, binCache := releasedPlugin(t), pathWithoutGo(t), t.TempDir()
	a := newAgent(t)
	if out, code := releaseJob(t, a, srv, plugin, path, binCache, rel, "first").run("pre-command"); code != 0 {
		t.Fatalf("first job: %d\n%s", code, out)
	}
	var found []string // wherever the shim keeps it
	_ = filepath.WalkDir(binCache, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "pre-command" && !d.IsDir() {
			found = append(found, p)
		}
		return nil
	})
	if len(found) != 1 {
		t.Fatalf("cached binaries %q, want one", found)
	}
	cached := found[0]
	must(t, os.WriteFile(cached, []byte("#!/bin/sh\necho tampered binary ran\n"), 0o755))
	tampered := sha(t, cached)

	out, code := releaseJob(t, a, srv, plugin, path, binCache, rel, "second").run("pre-command")
	if code != 0 || strings.Contains(out, "tampered binary ran") || !strings.Contains(out, "Cache miss") {
		t.Fatalf("second job ran the tampered binary, or failed: %d\n%s", code, out)
	}
	if want := "the cached " + cached + " has SHA-256 " + tampered + " but was " + sha(t, filepath.Join(rel.dir, asset("pre-command"))); !strings.Contains(out, want) {
		t.Fatalf("no warning %q:\n%s", want, out)
	}
	if n := rel.requests.Load(); n != 4 {
		t.Fatalf("%d requests to the release server, want 4 (a download for each job)", n)
	}
	if sha(t, cached) != sha(t, filepath.Join(rel.dir, asset("pre-command"))) {
		t.Fatal("the binary downloaded again is not the release")
	}
}

// With no home directory there is nowhere to cache a binary: nothing is downloaded (or written
// relative to wherever the hook runs), and the hook says why.
func TestReleaseBinaryIsNotCachedWithoutAHome(t *testing.T) {
	srv := s3test.StartT(t, s3test.Versitygw)
	rel := serveRelease(t)
	plugin, path := releasedPlugin(t), pathWithoutGo(t)
	for _, soft := range []string{"true", "false"} {
		j := releaseJob(t, newAgent(t), srv, plugin, path, "", rel, "job").set("SOFT_FAIL", soft)
		j.env["HOME"], j.env["XDG_CACHE_HOME"] = "", ""
		out, code := j.run("pre-command")
		if want := map[string]int{"true": 0, "false": 1}[soft]; code != want ||
			!strings.Contains(out, "no directory to cache the plugin's binary in: HOME and XDG_CACHE_HOME are unset") {
			t.Fatalf("soft-fail %s: exit %d, want %d and a message saying there is no binary cache:\n%s", soft, code, want, out)
		}
		if entries, err := os.ReadDir(j.checkout); err != nil || len(entries) != 1 {
			t.Fatalf("the hook wrote into the checkout: %v %v", entries, err)
		}
	}
	if n := rel.requests.Load(); n != 0 {
		t.Fatalf("%d requests to the release server, want none", n)
	}
}

// A restore into the directory where the agent keeps the plugin's binaries (or one holding it)
// would replace them: the path is refused as a configuration error.
func TestReleaseBinaryCacheIsRefusedAsACachePath(t *testing.T) {
	srv := s3test.StartT(t, s3test.Versitygw)
	rel := serveRelease(t)
	plugin, path := releasedPlugin(t), pathWithoutGo(t)
	home := t.TempDir()
	binCache := filepath.Join(home, ".cache", "s3-cache", "bin")
	for _, cached := range []string{"~/.cache", "~/.cache/s3-cache/bin", filepath.Dir(cachedBinary(binCache, rel, ""))} {
		for _, hook := range []string{"pre-command", "post-command"} {
			j := releaseJob(t, newAgent(t), srv, plugin, path, "", rel, "job").set("PATH", cached)
			j.env["HOME"], j.env["XDG_CACHE_HOME"] = home, ""
			out, code := j.run(hook)
			if code != 1 || !strings.Contains(out, "invalid configuration: path: ") ||
				!strings.Contains(out, "overlaps "+binCache+", where the agent keeps this plugin's binaries") {
				t.Fatalf("%s with path %s: exit %d, want 1 and a configuration error:\n%s", hook, cached, code, out)
			}
		}
	}
}

// The release has both hooks for every platform, statically linked where the platform allows it
// (Linux; macOS binaries always link the system library), stamped with the version.
func TestReleaseArtifacts(t *testing.T) {
	rel := serveRelease(t)
	if _, err := exec.LookPath("file"); err != nil {
		t.Fatal("the release test needs file(1): apt-get install -y file")
	}
	for _, hook := range []string{"pre-command", "post-command", "s3-cache"} {
		for _, goos := range []string{"linux", "darwin", "windows"} {
			for _, arch := range []string{"amd64", "arm64"} {
				name := hook + "_" + goos + "_" + arch
				if goos == "windows" {
					name += ".exe"
				}
				out, err := exec.Command("file", "-b", filepath.Join(rel.dir, name)).Output()
				must(t, err)
				want := map[string]string{"linux": "statically linked", "darwin": "Mach-O 64-bit", "windows": "PE32+ executable"}[goos]
				if !strings.Contains(string(out), want) {
					t.Errorf("%s: file says %q, want %q", name, strings.TrimSpace(string(out)), want)
				}
			}
		}
	}
	native := filepath.Join(rel.dir, asset("pre-command"))
	must(t, os.Chmod(native, 0o755))
	out, err := exec.Command(native, "--version").Output()
	must(t, err)
	if !regexp.MustCompile(`^s3-cache pre-command v\d+\.\d+\.\d+`).Match(out) {
		t.Fatalf("--version printed %q, want the release's version", out)
	}
	command := filepath.Join(rel.dir, asset("s3-cache"))
	must(t, os.Chmod(command, 0o755))
	out, err = exec.Command(command, "version").Output()
	must(t, err)
	if !regexp.MustCompile(`^s3-cache v\d+\.\d+\.\d+`).Match(out) {
		t.Fatalf("s3-cache version printed %q, want the release's version", out)
	}
}
