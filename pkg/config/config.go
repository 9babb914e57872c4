// Package config reads the plugin's configuration from the environment that buildkite-agent
// prepares for a plugin hook, and validates it.
//
// Buildkite turns each key of the plugin's pipeline configuration into an environment variable
// BUILDKITE_PLUGIN_S3_CACHE_<KEY> (upper-cased, "-" → "_", list items as _0, _1, …). The same
// variables set in the agent's environment act as organisation-wide defaults; the job
// environment, which carries the pipeline's keys, wins over them. Only prefixed variables count:
// a job's own BUCKET or FORCE is not configuration.
//
// Both arrive as one environment, so a list key (path/paths, manifest, save) is never merged
// from several forms: the list form (KEY_0, KEY_1, …) replaces the scalar form (KEY) whole, and
// for path and paths the first set of PATHS_n, PATH_n, PATHS, PATH is used. An agent default
// for a list key is therefore written as PATH, MANIFEST or SAVE (not PATHS, which would win over
// a pipeline's path): every form a pipeline can set then replaces it.
//
// Paths are resolved against the job (ResolvePaths): a path a restore could not replace whole
// without destroying the checkout, $HOME or the root is an error, as are "~" without HOME and
// "~user".
//
// Every problem is a *Error that names the key and what is allowed. Configuration errors are
// never soft: the hooks fail loudly on them, before touching the cache or the file system.
package config

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/fspath"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/archive"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/s3"
)

// Prefix starts every environment variable of the plugin.
const Prefix = "BUILDKITE_PLUGIN_S3_CACHE_"

// Level is how widely a cache entry is shared, from the narrowest (file) to the widest (all).
type Level string

// The levels, narrowest first.
const (
	LevelFile     Level = "file"
	LevelStep     Level = "step"
	LevelBranch   Level = "branch"
	LevelPipeline Level = "pipeline"
	LevelAll      Level = "all"
)

// Levels lists every level, narrowest first: the order of the restore ladder.
var Levels = []Level{LevelFile, LevelStep, LevelBranch, LevelPipeline, LevelAll}

func parseLevel(key, s string) (Level, error) {
	l := Level(strings.TrimSpace(s))
	if !slices.Contains(Levels, l) {
		return "", &Error{Key: key, Msg: fmt.Sprintf("invalid level %q: want one of file, step, branch, pipeline, all", s)}
	}
	return l, nil
}

// When says after which command outcomes a cache is saved.
type When string

// The values of the when key.
const (
	WhenOnSuccess When = "on-success"
	WhenOnFailure When = "on-failure"
	WhenAlways    When = "always"
)

// Isolation says which builds share caches (docs/design.md#keys).
type Isolation string

// The values of the isolation key.
const (
	// IsolationBranch: only the default branch's builds that are not pull requests write the
	// shared caches; every other build writes a namespace of its own and reads it, then the shared one.
	IsolationBranch Isolation = "branch"
	// IsolationNone: every build reads and writes the shared caches.
	IsolationNone Isolation = "none"
)

// Config is the validated configuration of one plugin instance. The options of the object store
// and of the cache are the packages' own types, filled here once; their consumers add only what
// is not configuration (the log, resolved paths, credentials in tests).
type Config struct {
	Paths    []string // what to cache, as written in the pipeline (resolve with ResolvePath)
	Manifest []string // files, directories and globs hashed for the file level
	Restore  Level    // highest level to restore from; "" (unset or false) restores nothing
	Save     []Level  // levels to save under; empty (unset or false) saves nothing
	KeyExtra string   // mixed into every key
	When     When
	SoftFail bool   // runtime errors are warnings
	Prefix   string // key prefix, without leading or trailing "/"
	Annotate bool   // append a summary of each restore and save to the build's annotations
	// LookupOnly makes pre-command find the key a restore would take, without downloading.
	LookupOnly bool
	// FailOnCacheMiss fails pre-command on a miss (a failed restore is one), whatever SoftFail says.
	FailOnCacheMiss bool
	// Isolation scopes the caches a build reads and writes; ForkSaves lets pull requests from
	// forks save (into their own namespace, unless Isolation is none).
	Isolation Isolation
	ForkSaves bool
	// RestoreNewest: when every level misses, restore the newest file-level cache of the same
	// family (any manifest).
	RestoreNewest bool

	Cache CacheOptions // how the archive is written, restored and saved
	// Store is the bucket and how to reach it: every key of s3.Options but Log,
	// VerdictDir and Credentials, which are not configuration. Retries (the retries key) counts
	// the attempts of each S3 request; ProbePrefix is Prefix + "/".
	Store s3.Options
}

// CacheOptions configure a cache.Cache. They are declared here, not in pkg/cache, because
// pkg/cache depends on this package (through pkg/cachekey); cache.New consumes them as they are.
type CacheOptions struct {
	Compression      archive.Compression
	CompressionLevel int   // 0: the compressor's default
	Restarts         int   // the download-retries key: whole-restore restarts after the object changed or broke mid-download
	MaxSize          int64 // archives above this are not saved (0: no limit)
	Force            bool  // overwrite existing objects
	// LockTimeout bounds the wait for other jobs on this host using the same paths
	// (archive.LockTargets); 0 means archive.DefaultLockTimeout. Not a configuration key.
	LockTimeout time.Duration
	// StampDir is this user's private directory for the stamps of warm restores
	// (docs/design.md#warm-restores); "" records and trusts none. Not a configuration key.
	StampDir string
}

// Error is a configuration error: it names the key and what is wrong with it.
type Error struct {
	Key string // the key as written in the pipeline (e.g. "download-retries")
	Msg string
}

func (e *Error) Error() string {
	if e.Key == "" {
		return e.Msg
	}
	return e.Key + ": " + e.Msg
}

// vars holds the scalar keys, declared with envconfig's struct tags (see decodeVars). Types with a
// Decode method validate themselves.
type vars struct {
	KeyExtra          string       `envconfig:"KEY_EXTRA"`
	Force             bool         `envconfig:"FORCE"`
	When              When         `envconfig:"WHEN" default:"on-success"`
	Compression       compression  `envconfig:"COMPRESSION" default:"zstd"`
	CompressionLevel  int          `envconfig:"COMPRESSION_LEVEL"`
	SoftFail          bool         `envconfig:"SOFT_FAIL" default:"true"`
	FailOnCacheMiss   bool         `envconfig:"FAIL_ON_CACHE_MISS"`
	LookupOnly        bool         `envconfig:"LOOKUP_ONLY"`
	Restarts          int          `envconfig:"DOWNLOAD_RETRIES" default:"3"`
	Retries           int          `envconfig:"RETRIES"`
	Bucket            string       `envconfig:"BUCKET"`
	Prefix            string       `envconfig:"PREFIX"`
	Region            string       `envconfig:"REGION"`
	Endpoint          string       `envconfig:"ENDPOINT"`
	Profile           string       `envconfig:"PROFILE"`
	ForcePathStyle    optionalBool `envconfig:"FORCE_PATH_STYLE"`
	StorageClass      string       `envconfig:"STORAGE_CLASS"`
	SSE               string       `envconfig:"SSE"`
	SSEKMSKeyID       string       `envconfig:"SSE_KMS_KEY_ID"`
	ConditionalWrites conditional  `envconfig:"CONDITIONAL_WRITES" default:"auto"`
	StallTimeout      Duration     `envconfig:"STALL_TIMEOUT" default:"60s"`
	Concurrency       int          `envconfig:"CONCURRENCY"`
	PartSize          Size         `envconfig:"PART_SIZE"`
	MaxSize           Size         `envconfig:"MAX_SIZE"`
	Annotate          bool         `envconfig:"ANNOTATE"`
	Backend           backend      `envconfig:"BACKEND"`
	OnlyShowErrors    string       `envconfig:"ONLY_SHOW_ERRORS"` // the aws CLI's flag; this plugin is quiet anyway
	Isolation         Isolation    `envconfig:"ISOLATION" default:"branch"`
	ForkSaves         bool         `envconfig:"FORK_SAVES"`
	RestoreNewest     bool         `envconfig:"RESTORE_NEWEST" default:"true"`
}

// Keys lists every configuration key the plugin accepts, as written in a pipeline.
var Keys = []string{
	"path", "paths", "manifest", "restore", "save", "key-extra", "force", "when",
	"compression", "compression-level", "soft-fail", "download-retries", "retries",
	"bucket", "prefix", "region", "endpoint", "profile", "force-path-style",
	"storage-class", "sse", "sse-kms-key-id", "conditional-writes", "stall-timeout",
	"concurrency", "part-size", "max-size",
	"annotate",
	"fail-on-cache-miss",
	"lookup-only",
	"isolation", "fork-saves", "restore-newest",
	// Accepted for compatibility with the official cache plugin's S3 backend.
	"backend", "only-show-errors",
}

// Outputs are the variables the hooks export to the command. They share the plugin's prefix, so
// they are not configuration keys and must not be mistaken for unknown ones.
var Outputs = []string{"HIT", "HIT_KEY", "HIT_LEVEL"}

// listKeys may be given as a scalar or as a list (_0, _1, …).
var listKeys = []string{"PATH", "PATHS", "MANIFEST", "SAVE"}

var (
	indexed   = regexp.MustCompile(`^(.*)_([0-9]+)$`)
	plainName = regexp.MustCompile(`^[A-Za-z0-9_]+$`)
)

// Load reads and validates the configuration from the process environment.
func Load() (*Config, error) {
	return LoadEnv(os.Environ())
}

// LoadEnv reads and validates the configuration from environ ("NAME=value" strings). Only
// variables with the plugin's prefix count: a job's BUCKET or FORCE is not configuration.
func LoadEnv(environ []string) (*Config, error) {
	env := map[string]string{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if ok && strings.HasPrefix(k, Prefix) {
			env[strings.TrimPrefix(k, Prefix)] = v
		}
	}
	if err := checkUnknown(env); err != nil {
		return nil, err
	}

	var v vars
	if err := decodeVars(env, &v); err != nil {
		return nil, err
	}

	prefix := strings.Trim(v.Prefix, "/")
	c := &Config{
		// path is the official cache plugin's key, paths this plugin's own: see list.
		Paths:    list(env, "PATHS", "PATH"),
		Manifest: list(env, "MANIFEST"),
		KeyExtra: v.KeyExtra,
		When:     v.When,
		SoftFail: v.SoftFail,
		Prefix:   prefix,
		Annotate: v.Annotate,

		Isolation:     v.Isolation,
		ForkSaves:     v.ForkSaves,
		RestoreNewest: v.RestoreNewest,

		LookupOnly:      v.LookupOnly,
		FailOnCacheMiss: v.FailOnCacheMiss,
		Cache: CacheOptions{
			Compression:      v.Compression.c,
			CompressionLevel: v.CompressionLevel,
			Restarts:         v.Restarts,
			MaxSize:          int64(v.MaxSize),
			Force:            v.Force,
		},
		Store: storeOptions(&v, prefix),
	}
	restoreOff, err := off("restore", env["RESTORE"])
	if err != nil {
		return nil, err
	}
	if r := strings.TrimSpace(env["RESTORE"]); r != "" && !restoreOff {
		l, err := parseLevel("restore", r)
		if err != nil {
			return nil, err
		}
		c.Restore = l
	}
	saves := list(env, "SAVE")
	saveOff := false
	if len(saves) == 1 { // false is a scalar; in a list it is an invalid level
		if saveOff, err = off("save", saves[0]); err != nil {
			return nil, err
		}
	}
	for _, s := range saves {
		if saveOff {
			break
		}
		l, err := parseLevel("save", s)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(c.Save, l) {
			c.Save = append(c.Save, l)
		}
	}
	if (restoreOff || saveOff) && c.Restore == "" && len(c.Save) == 0 {
		return nil, &Error{Key: "restore", Msg: "neither restore nor save is on (false or unset): the plugin would do nothing; set one of them to a level, or remove the plugin from the step"}
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// off tells whether a restore or save key is the boolean false, the official cache plugin's
// users' way of saying "not in this step" (read-only or save-only). True has no level to mean,
// so it is an error that says what is allowed.
func off(key, s string) (bool, error) {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	switch {
	case err != nil:
		return false, nil // a level, or an invalid one: parseLevel says which
	case b:
		return false, &Error{Key: key, Msg: fmt.Sprintf("invalid value %q: want a level (file, step, branch, pipeline, all) or false", s)}
	}
	return true, nil
}

// probePrefix is where the conditional-writes probe puts its objects: under the key prefix, so
// that IAM policies scoped to it cover them.
func probePrefix(prefix string) string {
	if prefix == "" {
		return ""
	}
	return prefix + "/"
}

// validate checks ranges and the combinations of keys.
func (c *Config) validate() error {
	cc, st := c.Cache, c.Store
	ranges := []struct {
		key           string
		val, min, max int64
		want          string
	}{
		{"compression-level", int64(cc.CompressionLevel), 0, 22, "0 (default) to 22 for zstd, 1 to 9 for gzip"},
		{"download-retries", int64(cc.Restarts), 0, 100, "0 to 100"},
		{"retries", int64(st.Retries), 0, 100, "0 to 100"},
		{"concurrency", int64(st.Concurrency), 0, 64, "1 to 64, or 0 for automatic"},
		{"part-size", st.PartSize, 0, 5 << 30, "5MiB to 5GiB"},
		{"max-size", cc.MaxSize, 0, 5 << 40, "a size such as 10GiB"},
		{"stall-timeout", int64(st.StallTimeout), int64(time.Second), int64(time.Hour), "1s to 1h"},
	}
	for _, r := range ranges {
		if r.val < r.min || r.val > r.max {
			return &Error{Key: r.key, Msg: fmt.Sprintf("invalid value %d: want %s", r.val, r.want)}
		}
	}
	if st.PartSize != 0 && st.PartSize < 5<<20 {
		return &Error{Key: "part-size", Msg: fmt.Sprintf("invalid value %d: want 5MiB to 5GiB (S3's smallest part is 5MiB)", st.PartSize)}
	}
	if cc.Compression == archive.Gzip && cc.CompressionLevel > 9 {
		return &Error{Key: "compression-level", Msg: fmt.Sprintf("invalid value %d for gzip: want 1 to 9", cc.CompressionLevel)}
	}
	for _, p := range c.Paths {
		if strings.TrimSpace(p) == "" {
			return &Error{Key: "path", Msg: "empty path"}
		}
	}
	switch {
	case len(c.Paths) == 0:
		return &Error{Key: "path", Msg: "missing: set path (or paths) to what should be cached"}
	case c.Restore == "" && len(c.Save) == 0:
		return &Error{Key: "restore", Msg: "missing: set restore and/or save to a level (file, step, branch, pipeline, all)"}
	case c.LookupOnly && c.Restore == "":
		return &Error{Key: "lookup-only", Msg: "needs restore: set restore to the widest level to look up"}
	case c.FailOnCacheMiss && c.Restore == "":
		return &Error{Key: "fail-on-cache-miss", Msg: "needs restore: set restore to the widest level a hit may come from"}
	case len(c.Manifest) == 0 && (c.Restore == LevelFile || slices.Contains(c.Save, LevelFile)):
		return &Error{Key: "manifest", Msg: "missing: the file level hashes the manifest; set manifest to the files that define the cache (e.g. package-lock.json)"}
	case st.Bucket == "":
		return &Error{Key: "bucket", Msg: "missing: set bucket in the pipeline, or " + Prefix + "BUCKET in the agent environment"}
	}
	return nil
}

// RestoreLadder lists the levels to try when restoring, narrowest first, up to c.Restore.
// The file level is in it only when a manifest is configured.
func (c *Config) RestoreLadder() []Level {
	if c.Restore == "" {
		return nil
	}
	var out []Level
	for _, l := range Levels {
		if l != LevelFile || len(c.Manifest) > 0 {
			out = append(out, l)
		}
		if l == c.Restore {
			break
		}
	}
	return out
}

// ResolvePath turns a path or manifest pattern of key, as written, into a clean absolute path:
// "~" and "~/…" are below home, a relative path is below dir (the job's checkout). "~" without a
// home (HOME unset) and "~user" are configuration errors: expanding either would quietly cache
// something else (".npm" in the checkout, or a file literally named "~user"). A file whose name
// starts with "~" is written "./~name".
func ResolvePath(key, p, dir, home string) (string, error) {
	switch {
	case p == "~" || strings.HasPrefix(p, "~/"):
		if home == "" {
			return "", &Error{Key: key, Msg: fmt.Sprintf("%q: HOME is not set, so ~ has no meaning; set HOME or write an absolute path", p)}
		}
		p = filepath.Join(home, p[1:])
	case strings.HasPrefix(p, "~"):
		return "", &Error{Key: key, Msg: fmt.Sprintf("%q: ~user is not supported; write ~/… for $HOME, an absolute path, or ./%s for a file of that name", p, p)}
	case !filepath.IsAbs(p):
		p = filepath.Join(dir, p)
	}
	return filepath.Clean(p), nil
}

// ResolvePaths resolves the cache paths (see ResolvePath) and refuses, as a configuration error,
// every path a restore could not replace whole without destroying something else: the
// filesystem root; a path that is or contains the checkout (dir), $HOME (home) or one of keep
// (the job's other directories), compared as written and with symlinks followed, so that a link
// to the checkout is caught too; two paths that overlap. Paths inside those directories, such as
// node_modules or ~/.npm, are what a cache is for.
func ResolvePaths(paths []string, dir, home string, keep ...string) ([]string, error) {
	key := "path"
	if len(paths) > 1 {
		key = "paths"
	}
	type kept struct{ path, what string }
	var keeps []kept
	for _, k := range append([]string{home, dir}, keep...) {
		if k == "" || !filepath.IsAbs(k) {
			continue
		}
		what := "the job's directory"
		switch k {
		case dir:
			what = "the checkout"
		case home:
			what = "$HOME"
		}
		for _, f := range fspath.Forms(k) {
			keeps = append(keeps, kept{f, what})
		}
	}
	out := make([]string, len(paths))
	for i, p := range paths {
		abs, err := ResolvePath(key, p, dir, home)
		if err != nil {
			return nil, err
		}
		for _, f := range fspath.Forms(abs) {
			if filepath.Dir(f) == f {
				return nil, &Error{Key: key, Msg: fmt.Sprintf("%q is the filesystem root: a restore replaces a path whole; cache a directory below it", p)}
			}
			for _, k := range keeps {
				if fspath.Within(f, k.path) {
					return nil, &Error{Key: key, Msg: fmt.Sprintf("%q is or contains %s (%s): a restore replaces a path whole; cache a directory inside it, such as node_modules or ~/.npm", p, k.what, k.path)}
				}
			}
		}
		for j := range i {
			if fspath.OverlapAnyForm(abs, out[j]) {
				return nil, &Error{Key: "paths", Msg: fmt.Sprintf("%q and %q overlap: list each directory once", paths[j], p)}
			}
		}
		out[i] = abs
	}
	return out, nil
}

// list returns a list key from the first of its forms that is set, in this order: the list form
// of each name (NAME_0, NAME_1, … up to the first gap), then the scalar form of each name. Agent
// defaults and the pipeline's keys arrive in one environment, so the forms are never merged:
// merging would append the pipeline's list to the agent's default. Blank items are dropped.
func list(env map[string]string, names ...string) []string {
	var out []string
	add := func(v string) {
		if strings.TrimSpace(v) != "" {
			out = append(out, v)
		}
	}
	for _, name := range names {
		if _, ok := env[name+"_0"]; !ok {
			continue
		}
		for i := 0; ; i++ {
			v, ok := env[name+"_"+strconv.Itoa(i)]
			if !ok {
				return out
			}
			add(v)
		}
	}
	for _, name := range names {
		if v, ok := env[name]; ok {
			add(v)
			return out
		}
	}
	return nil
}

func keyName(envKey string) string {
	return strings.ToLower(strings.ReplaceAll(envKey, "_", "-"))
}

func checkUnknown(env map[string]string) error {
	known := map[string]bool{}
	for _, k := range Keys {
		known[strings.ToUpper(strings.ReplaceAll(k, "-", "_"))] = true
	}
	for _, k := range Outputs {
		known[k] = true
	}
	var unknown []string
	for k := range env {
		if m := indexed.FindStringSubmatch(k); m != nil && slices.Contains(listKeys, m[1]) {
			continue
		}
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	key, name := keyName(unknown[0]), Prefix+unknown[0]
	if !plainName.MatchString(unknown[0]) { // keep the error one line and the name legible
		key, name = strconv.Quote(key), strconv.Quote(name)
	}
	return &Error{Key: key, Msg: fmt.Sprintf("unknown key (from %s); allowed keys: %s", name, strings.Join(Keys, ", "))}
}
