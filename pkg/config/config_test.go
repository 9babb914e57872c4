package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/archive"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/s3"
)

// setEnv replaces every plugin variable of the process with vars, for the test's duration.
func setEnv(t *testing.T, vars map[string]string) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, Prefix) {
			t.Setenv(k, "") // restores the value after the test
			os.Unsetenv(k)
		}
	}
	for k, v := range vars {
		t.Setenv(Prefix+k, v)
	}
}

func base() map[string]string {
	return map[string]string{"PATH": "node_modules", "MANIFEST": "package-lock.json", "RESTORE": "file", "SAVE": "file", "BUCKET": "b"}
}

func with(m map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == "<unset>" {
			delete(out, kv[i])
		} else {
			out[kv[i]] = kv[i+1]
		}
	}
	return out
}

func TestLoadDefaults(t *testing.T) {
	setEnv(t, base())
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.Cache.Compression != archive.Zstd || !c.SoftFail || c.Cache.Restarts != 3 || c.When != WhenOnSuccess ||
		c.Store.ConditionalWrites != s3.ConditionalAuto || c.Cache.Force || c.Store.ForcePathStyle != nil || c.Store.StallTimeout != time.Minute ||
		c.Isolation != IsolationBranch || c.ForkSaves || !c.RestoreNewest {
		t.Fatalf("defaults: %+v", c)
	}
	if !slices.Equal(c.Paths, []string{"node_modules"}) || c.Restore != LevelFile || !slices.Equal(c.Save, []Level{LevelFile}) {
		t.Fatalf("keys: %+v", c)
	}
}

func TestLoadValues(t *testing.T) {
	setEnv(t, with(base(), "PATH", "<unset>", "PATHS_0", "a", "PATHS_1", "~/.npm",
		"MANIFEST", "<unset>", "MANIFEST_0", "go.sum", "MANIFEST_1", "*.lock",
		"SAVE", "<unset>", "SAVE_0", "file", "SAVE_1", "branch", "SAVE_2", "file",
		"RESTORE", "pipeline", "COMPRESSION", "tgz", "COMPRESSION_LEVEL", "9", "FORCE", "true",
		"SOFT_FAIL", "false", "DOWNLOAD_RETRIES", "5", "PART_SIZE", "64MiB", "MAX_SIZE", "2GB",
		"FORCE_PATH_STYLE", "false", "WHEN", "always", "PREFIX", "/caches/", "BACKEND", "s3",
		"HIT", "exact", "ONLY_SHOW_ERRORS", "true", "ISOLATION", "none", "FORK_SAVES", "true", "RESTORE_NEWEST", "false"))
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Paths: []string{"a", "~/.npm"}, Manifest: []string{"go.sum", "*.lock"}, Restore: LevelPipeline,
		Save: []Level{LevelFile, LevelBranch}, When: WhenAlways, Prefix: "caches", Isolation: IsolationNone, ForkSaves: true,
		Cache: CacheOptions{Compression: archive.Gzip, CompressionLevel: 9, Force: true, Restarts: 5, MaxSize: 2e9},
		Store: s3.Options{PartSize: 64 << 20, Bucket: "b", ConditionalWrites: s3.ConditionalAuto}}
	if c.Store.ForcePathStyle == nil || *c.Store.ForcePathStyle {
		t.Fatalf("force-path-style: %v", c.Store.ForcePathStyle)
	}
	c.Store.ForcePathStyle = nil
	if !equal(*c, want) {
		t.Fatalf("got  %+v\nwant %+v", *c, want)
	}
	if got := c.RestoreLadder(); !slices.Equal(got, []Level{LevelFile, LevelStep, LevelBranch, LevelPipeline}) {
		t.Fatalf("ladder %v", got)
	}
}

func equal(a, b Config) bool {
	return slices.Equal(a.Paths, b.Paths) && slices.Equal(a.Manifest, b.Manifest) && slices.Equal(a.Save, b.Save) &&
		a.Restore == b.Restore && a.Cache.Compression == b.Cache.Compression && a.Cache.CompressionLevel == b.Cache.CompressionLevel &&
		a.Cache.Force == b.Cache.Force && a.SoftFail == b.SoftFail && a.Cache.Restarts == b.Cache.Restarts &&
		a.Store.PartSize == b.Store.PartSize && a.Cache.MaxSize == b.Cache.MaxSize && a.When == b.When && a.Prefix == b.Prefix &&
		a.Store.Bucket == b.Store.Bucket && a.Store.ConditionalWrites == b.Store.ConditionalWrites &&
		a.Isolation == b.Isolation && a.ForkSaves == b.ForkSaves && a.RestoreNewest == b.RestoreNewest
}

type loadErrorCase struct {
	name string
	env  map[string]string
	key  string // the key the error must name
	msg  string
}

// loadErrorCases also seed FuzzLoad.
func loadErrorCases() []loadErrorCase {
	return []loadErrorCase{
		{"unknown key", with(base(), "RESTORE_KEYS", "x"), "restore-keys", "unknown key"},
		{"invalid restore level", with(base(), "RESTORE", "everything"), "restore", `invalid level "everything": want one of file, step, branch, pipeline, all`},
		{"invalid save level", with(base(), "SAVE_0", "file", "SAVE_1", "nope", "SAVE", "<unset>"), "save", `invalid level "nope"`},
		{"missing path", with(base(), "PATH", "<unset>"), "path", "missing"},
		{"missing bucket", with(base(), "BUCKET", "<unset>"), "bucket", "missing"},
		{"neither restore nor save", with(base(), "RESTORE", "<unset>", "SAVE", "<unset>"), "restore", "missing"},
		{"file level without manifest", with(base(), "MANIFEST", "<unset>"), "manifest", "missing"},
		{"bad boolean", with(base(), "FORCE", "yes"), "force", `invalid value "yes": want true or false`},
		{"bad soft-fail", with(base(), "SOFT_FAIL", "maybe"), "soft-fail", "want true or false"},
		{"bad integer", with(base(), "DOWNLOAD_RETRIES", "three"), "download-retries", "want a whole number"},
		{"negative retries", with(base(), "DOWNLOAD_RETRIES", "-1"), "download-retries", "want 0 to 100"},
		{"bad compression", with(base(), "COMPRESSION", "bz2"), "compression", "want zstd, tgz (gzip) or none"},
		{"zip compression", with(base(), "COMPRESSION", "zip"), "compression", "zip is not supported"},
		{"gzip level", with(base(), "COMPRESSION", "gzip", "COMPRESSION_LEVEL", "15"), "compression-level", "want 1 to 9"},
		{"bad when", with(base(), "WHEN", "sometimes"), "when", "want on-success, on-failure or always"},
		{"bad conditional-writes", with(base(), "CONDITIONAL_WRITES", "maybe"), "conditional-writes", "want auto, on or off"},
		{"small part size", with(base(), "PART_SIZE", "1MiB"), "part-size", "5MiB"},
		{"bad size", with(base(), "MAX_SIZE", "lots"), "max-size", "invalid size"},
		{"bad stall-timeout", with(base(), "STALL_TIMEOUT", "soon"), "stall-timeout", "invalid duration"},
		{"tiny stall-timeout", with(base(), "STALL_TIMEOUT", "10ms"), "stall-timeout", "1s to 1h"},
		{"other backend", with(base(), "BACKEND", "fs"), "backend", "S3 only"},
		{"bad annotate", with(base(), "ANNOTATE", "often"), "annotate", `invalid value "often": want true or false`},
		{"restore true", with(base(), "RESTORE", "true"), "restore", `invalid value "true": want a level (file, step, branch, pipeline, all) or false`},
		{"save true", with(base(), "SAVE", "true"), "save", `want a level (file, step, branch, pipeline, all) or false`},
		{"false in a save list", with(base(), "SAVE", "<unset>", "SAVE_0", "file", "SAVE_1", "false"), "save", `invalid level "false"`},
		{"restore and save false", with(base(), "RESTORE", "false", "SAVE", "false"), "restore", "neither restore nor save is on"},
		{"restore false, no save", with(base(), "RESTORE", "false", "SAVE", "<unset>"), "restore", "neither restore nor save is on"},
		{"bad lookup-only", with(base(), "LOOKUP_ONLY", "yes"), "lookup-only", "want true or false"},
		{"lookup-only without restore", with(base(), "LOOKUP_ONLY", "true", "RESTORE", "false"), "lookup-only", "needs restore"},
		{"bad fail-on-cache-miss", with(base(), "FAIL_ON_CACHE_MISS", "1x"), "fail-on-cache-miss", "want true or false"},
		{"fail-on-cache-miss without restore", with(base(), "FAIL_ON_CACHE_MISS", "true", "RESTORE", "<unset>"), "fail-on-cache-miss", "needs restore"},
		{"bad isolation", with(base(), "ISOLATION", "pipeline"), "isolation", `invalid value "pipeline": want branch`},
		{"bad fork-saves", with(base(), "FORK_SAVES", "never"), "fork-saves", "want true or false"},
		{"bad restore-newest", with(base(), "RESTORE_NEWEST", "latest"), "restore-newest", "want true or false"},
	}
}

// restore: false and save: false turn one side off, as omitting the key does in the official
// cache plugin; they also override an agent default (BUILDKITE_PLUGIN_S3_CACHE_SAVE=pipeline).
// Every form that worked before still does.
func TestRestoreAndSaveFalse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		restore Level
		save    []Level
	}{
		{"save false", with(base(), "SAVE", "false"), LevelFile, nil},
		{"save False", with(base(), "SAVE", "False"), LevelFile, nil},
		{"save unset", with(base(), "SAVE", "<unset>"), LevelFile, nil},
		{"restore false", with(base(), "RESTORE", "false"), "", []Level{LevelFile}},
		{"restore 0", with(base(), "RESTORE", "0"), "", []Level{LevelFile}},
		{"restore unset", with(base(), "RESTORE", "<unset>"), "", []Level{LevelFile}},
		{"save list", with(base(), "SAVE", "<unset>", "SAVE_0", "file", "SAVE_1", "all"), LevelFile, []Level{LevelFile, LevelAll}},
		// An agent default in the scalar form is replaced by the pipeline's list, as before.
		{"save list over false", with(base(), "SAVE", "false", "SAVE_0", "step"), LevelFile, []Level{LevelStep}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setEnv(t, tc.env)
			c, err := Load()
			if err != nil {
				t.Fatal(err)
			}
			if c.Restore != tc.restore || !slices.Equal(c.Save, tc.save) {
				t.Fatalf("restore %q, save %q; want %q, %q", c.Restore, c.Save, tc.restore, tc.save)
			}
		})
	}
}

func TestLookupOnlyAndFailOnCacheMiss(t *testing.T) {
	setEnv(t, with(base(), "LOOKUP_ONLY", "true", "FAIL_ON_CACHE_MISS", "true"))
	c, err := Load()
	if err != nil || !c.LookupOnly || !c.FailOnCacheMiss {
		t.Fatalf("Load() = %+v, %v; want lookup-only and fail-on-cache-miss on", c, err)
	}
	setEnv(t, base())
	if c, err := Load(); err != nil || c.LookupOnly || c.FailOnCacheMiss {
		t.Fatalf("Load() = %+v, %v; want both off by default", c, err)
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range loadErrorCases() {
		t.Run(tc.name, func(t *testing.T) {
			setEnv(t, tc.env)
			_, err := Load()
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Load() = %v, want a *config.Error", err)
			}
			if ce.Key != tc.key || !strings.Contains(err.Error(), tc.msg) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q: want key %q and one line containing %q", err, tc.key, tc.msg)
			}
		})
	}
}

func TestResolvePath(t *testing.T) {
	for _, tc := range []struct{ in, home, want, err string }{
		{"node_modules", "/home/u", "/work/co/node_modules", ""},
		{"./a/../b", "/home/u", "/work/co/b", ""},
		{"~", "/home/u", "/home/u", ""},
		{"~/.npm", "/home/u", "/home/u/.npm", ""},
		{"/abs/dir/", "/home/u", "/abs/dir", ""},
		{"./~x", "/home/u", "/work/co/~x", ""},
		{"~/.npm", "", "", `"~/.npm": HOME is not set`},
		{"~", "", "", `"~": HOME is not set`},
		{"~root/.npm", "/home/u", "", `"~root/.npm": ~user is not supported`},
		{"~x", "/home/u", "", "~user is not supported"},
	} {
		got, err := ResolvePath("manifest", tc.in, "/work/co", tc.home)
		var ce *Error
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("ResolvePath(%q, home %q) = %q, %v; want %q", tc.in, tc.home, got, err, tc.want)
		case tc.err != "" && (!errors.As(err, &ce) || ce.Key != "manifest" || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ResolvePath(%q, home %q) = %q, %v; want a manifest error containing %q", tc.in, tc.home, got, err, tc.err)
		}
	}
}

// A restore replaces each path whole: a path that holds the checkout, $HOME or the working
// directory, or the root, would delete them. Paths inside them are what caches are for.
func TestResolvePathsRefusesWhatARestoreWouldDestroy(t *testing.T) {
	tmp := t.TempDir()
	home := filepath.Join(tmp, "home")
	co := filepath.Join(home, "builds", "agent-1", "acme", "web") // the agent's builds dir below $HOME
	wd := filepath.Join(tmp, "wd")
	for _, d := range []string{co, wd, filepath.Join(tmp, "other")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{"link-to-co": co, "link-to-builds": filepath.Dir(co), "link-to-root": "/", "link-to-other": filepath.Join(tmp, "other")} {
		if err := os.Symlink(target, filepath.Join(tmp, link)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		paths []string
		err   string // "" when allowed
	}{
		{[]string{"node_modules"}, ""},
		{[]string{"~/.npm", "node_modules", "vendor/bundle"}, ""},
		{[]string{co + "/node_modules"}, ""},
		{[]string{filepath.Join(tmp, "other")}, ""},
		{[]string{filepath.Join(tmp, "link-to-other")}, ""},
		{[]string{filepath.Join(tmp, "not-yet")}, ""},
		{[]string{"."}, "the checkout"},
		{[]string{"./"}, "the checkout"},
		{[]string{".."}, "the checkout"},
		{[]string{"../.."}, "the checkout"},
		{[]string{"node_modules/../."}, "the checkout"},
		{[]string{co}, "the checkout"},
		{[]string{co + "/"}, "the checkout"},
		{[]string{filepath.Dir(co)}, "the checkout"},
		{[]string{tmp}, "$HOME"},
		{[]string{"~"}, "$HOME"},
		{[]string{"~/"}, "$HOME"},
		{[]string{"node_modules", "~/builds"}, "the checkout"},
		{[]string{home}, "$HOME"},
		{[]string{wd}, "the job's directory"},
		{[]string{"/"}, "filesystem root"},
		{[]string{"/.."}, "filesystem root"},
		{[]string{filepath.Join(tmp, "link-to-co")}, "the checkout"},
		{[]string{filepath.Join(tmp, "link-to-builds")}, "the checkout"},
		{[]string{filepath.Join(tmp, "link-to-root")}, "filesystem root"},
		{[]string{"~/.npm"}, ""},
		{[]string{"node_modules", "node_modules/.cache"}, "overlap"},
		{[]string{filepath.Join(tmp, "other"), filepath.Join(tmp, "link-to-other", "not-yet")}, "overlap"},
		{[]string{filepath.Join(tmp, "other", "a"), filepath.Join(tmp, "link-to-other", "b")}, ""},
	} {
		got, err := ResolvePaths(tc.paths, co, home, wd, "")
		if tc.err == "" {
			if err != nil || len(got) != len(tc.paths) {
				t.Errorf("paths %q: %v, want them allowed", tc.paths, err)
			}
			continue
		}
		var ce *Error
		if !errors.As(err, &ce) || (ce.Key != "path" && ce.Key != "paths") || !strings.Contains(err.Error(), tc.err) ||
			!strings.Contains(err.Error(), fmt.Sprintf("%q", tc.paths[len(tc.paths)-1])) {
			t.Errorf("paths %q: %v; want a path(s) error naming the last path and %q", tc.paths, err, tc.err)
		}
	}
}

func TestSizeDecode(t *testing.T) {
	for in, want := range map[string]int64{"123": 123, "5MiB": 5 << 20, "5 mb": 5e6, "1.5GiB": 3 << 29, "2G": 2 << 30, "10B": 10} {
		var s Size
		if err := s.Decode(in); err != nil || int64(s) != want {
			t.Errorf("Size(%q) = %d, %v; want %d", in, s, err, want)
		}
	}
}

// hostileBare gives every key's bare name (and its list forms) a value that would change the
// configuration or fail it if it counted: build scripts use BUCKET, FORCE, WHEN and so on for
// their own purposes. Derived from Keys, so a new key is covered without touching the test.
func hostileBare() map[string]string {
	special := map[string]string{"FORCE": "yes", "BUCKET": "evil", "WHEN": "never", "COMPRESSION": "zip",
		"CONCURRENCY": "-1", "SOFT_FAIL": "maybe", "RESTORE": "all", "SAVE": "all", "PATH": "/", "PATHS": "/",
		"PART_SIZE": "1", "MAX_SIZE": "1", "STALL_TIMEOUT": "0", "BACKEND": "fs", "FORCE_PATH_STYLE": "yes"}
	out := map[string]string{}
	for _, k := range Keys {
		name := strings.ToUpper(strings.ReplaceAll(k, "-", "_"))
		v, ok := special[name]
		if !ok {
			v = "evil-" + k
		}
		out[name] = v
		out[name+"_0"] = v
	}
	return out
}

func TestBareNamesAreNotConfiguration(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"base":      base(),
		"all lists": with(base(), "PATH", "<unset>", "PATHS_0", "a", "SAVE", "<unset>", "SAVE_0", "step", "MANIFEST", "<unset>", "MANIFEST_0", "go.sum"),
		"values":    with(base(), "FORCE", "false", "WHEN", "always", "PREFIX", "p", "CONCURRENCY", "4"),
	} {
		t.Run(name, func(t *testing.T) {
			setEnv(t, env)
			want, err := Load()
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range hostileBare() {
				t.Setenv(k, v) // PATH too: Load runs nothing
			}
			got, err := Load()
			if err != nil {
				t.Fatalf("with bare names set: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("bare names changed the configuration:\n got  %+v\n want %+v", got, want)
			}
		})
	}
}

// Agent-wide defaults and the pipeline's keys arrive in one environment. A list key set in its
// list form replaces the scalar whole; path and paths are one key, paths' list form first.
type listCase struct {
	name                    string
	env                     map[string]string
	paths, manifest, levels []string
}

// listCases also seed FuzzLoad.
func listCases() []listCase {
	return []listCase{
		{"scalars", base(), []string{"node_modules"}, []string{"package-lock.json"}, []string{"file"}},
		{"agent save, pipeline list", with(base(), "SAVE", "pipeline", "SAVE_0", "file"), nil, nil, []string{"file"}},
		{"agent save, pipeline two", with(base(), "SAVE", "pipeline", "SAVE_0", "file", "SAVE_1", "branch"), nil, nil, []string{"file", "branch"}},
		{"agent manifest, pipeline list", with(base(), "MANIFEST", "agent.lock", "MANIFEST_0", "go.sum"), nil, []string{"go.sum"}, nil},
		{"agent path, pipeline paths list", with(base(), "PATH", "agent", "PATHS_0", "a", "PATHS_1", "b"), []string{"a", "b"}, nil, nil},
		{"agent path, pipeline paths scalar", with(base(), "PATH", "agent", "PATHS", "b"), []string{"b"}, nil, nil},
		{"agent paths, pipeline path list", with(base(), "PATH", "<unset>", "PATHS", "agent", "PATH_0", "x"), []string{"x"}, nil, nil},
		{"paths list before path list", with(base(), "PATHS_0", "a", "PATH_0", "c"), []string{"a"}, nil, nil},
		{"list stops at a gap", with(base(), "SAVE_0", "step", "SAVE_2", "branch"), nil, nil, []string{"step"}},
		{"blank items are dropped", with(base(), "PATH", "agent", "PATHS_0", " ", "PATHS_1", "a"), []string{"a"}, nil, nil},
	}
}

func TestListKeysDoNotMerge(t *testing.T) {
	for _, tc := range listCases() {
		t.Run(tc.name, func(t *testing.T) {
			setEnv(t, tc.env)
			c, err := Load()
			if err != nil {
				t.Fatal(err)
			}
			var save []string
			for _, l := range c.Save {
				save = append(save, string(l))
			}
			if tc.paths != nil && !slices.Equal(c.Paths, tc.paths) {
				t.Errorf("paths %q, want %q", c.Paths, tc.paths)
			}
			if tc.manifest != nil && !slices.Equal(c.Manifest, tc.manifest) {
				t.Errorf("manifest %q, want %q", c.Manifest, tc.manifest)
			}
			if tc.levels != nil && !slices.Equal(save, tc.levels) {
				t.Errorf("save %q, want %q", save, tc.levels)
			}
		})
	}
}

// annotate is off unless a pipeline (or the agent's environment) turns it on.
func TestAnnotateKey(t *testing.T) {
	for _, tc := range []struct {
		value string // "<unset>": not set
		want  bool
	}{{"<unset>", false}, {"false", false}, {"true", true}, {"1", true}} {
		setEnv(t, with(base(), "ANNOTATE", tc.value))
		c, err := Load()
		if err != nil {
			t.Fatalf("annotate %q: %v", tc.value, err)
		}
		if c.Annotate != tc.want {
			t.Errorf("annotate %q: Annotate = %v, want %v", tc.value, c.Annotate, tc.want)
		}
	}
}
