// Package plugin runs the plugin's hooks: it reads the configuration and the job, computes the
// keys, restores in pre-command and saves in post-command, and tells the shim what to export.
//
// Failure policy: configuration errors (unknown keys, invalid values, a path a restore would
// destroy, a manifest that matches nothing) always fail the hook with exit 1 before anything is
// touched. Runtime errors (an
// unreachable endpoint, missing credentials, a failed transfer) are warnings and exit 0 unless
// soft-fail is false: a cache must never break a build by default. A restore that fails is a
// miss. The state file that carries keys from pre-command to post-command is written atomically
// in a directory private to the job's user (<TMPDIR>/s3-cache-<uid>, 0700; anything else there is
// refused, and a state file this user does not own is ignored) and removed by post-command.
package plugin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/atomicfile"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/buildkite"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cache"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cachekey"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/s3"
)

// Version is stamped at build time with -ldflags "-X .../pkg/plugin.Version=v1.2.3".
var Version = "dev"

// Hook is one of the plugin's hooks.
type Hook func(ctx context.Context, h *Run) error

// Run is everything a hook works with.
type Run struct {
	Config  *config.Config
	Job     buildkite.Job
	Log     *buildkite.Log
	Outputs map[string]string // exported to the command by the shim

	manifestHash string // computed once, when a file-level key is first needed
}

// Main runs hook as a command and returns its exit status.
func Main(name string, hook Hook, args []string, stdout io.Writer) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stdout)
	version := fs.Bool("version", false, "print the version and exit")
	envFile := fs.String("env-file", "", "write the variables to export to the command to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *version {
		fmt.Fprintf(stdout, "s3-cache %s %s (%s/%s)\n", name, Version, runtime.GOOS, runtime.GOARCH)
		return 0
	}
	log := buildkite.NewLog(stdout)

	cfg, err := config.Load()
	if err != nil {
		log.Errorf("invalid configuration: %v", err)
		return 1
	}
	job, err := buildkite.JobFromEnv()
	if err != nil {
		log.Errorf("%v", err)
		return 1
	}

	// Jobs are cancelled with SIGTERM: stop, clean up (abort uploads, remove staging), exit.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	run := &Run{Config: cfg, Job: job, Log: log, Outputs: map[string]string{}}
	if _, err := run.cachePaths(); err != nil { // before a hook touches anything
		log.Errorf("invalid configuration: %v", err)
		return 1
	}
	err = hook(ctx, run)
	if *envFile != "" && ctx.Err() == nil { // a cancelled job runs no command to export to
		if werr := writeEnvFile(*envFile, run.Outputs); werr != nil {
			err = errors.Join(err, werr)
		}
	}
	var cerr *config.Error
	switch {
	case err == nil:
		return 0
	case errors.As(err, &cerr):
		log.Errorf("invalid configuration: %v", err)
		return 1
	case ctx.Err() != nil:
		log.Warnf("%s cancelled: %v", name, err)
		return 1
	case cfg.SoftFail:
		log.Warnf("%v (the build goes on: soft-fail is on)", err)
		return 0
	default:
		log.Errorf("%v", err)
		return 1
	}
}

var (
	envName      = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)
	unsafeInName = regexp.MustCompile(`[^A-Za-z0-9-]`)
)

// writeEnvFile writes NAME=value lines for the shim to export. Values are single-line.
func writeEnvFile(path string, vars map[string]string) error {
	var b strings.Builder
	for k, v := range vars {
		if !envName.MatchString(k) || strings.ContainsAny(v, "\n\r\x00") {
			return fmt.Errorf("output %s: not exportable", k)
		}
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	return atomicfile.Write(path, []byte(b.String()), 0o600)
}

// cachePaths resolves the configured paths, refusing any a restore must not replace (see
// config.ResolvePaths): besides the checkout and $HOME, the working directory and the checkout
// as the agent names it, in case they differ.
func (r *Run) cachePaths() ([]string, error) {
	keep := []string{os.Getenv("BUILDKITE_BUILD_CHECKOUT_PATH")}
	if wd, err := os.Getwd(); err == nil {
		keep = append(keep, wd)
	}
	return config.ResolvePaths(r.Config.Paths, r.Job.Dir, r.Job.Home, keep...)
}

// newCache builds the cache the configuration describes.
func (r *Run) newCache(ctx context.Context) (*cache.Cache, error) {
	paths, err := r.cachePaths()
	if err != nil {
		return nil, err
	}
	o := r.Config.Store
	o.Warn, o.Info = r.Log.Warnf, r.Log.Infof
	store, err := s3.New(ctx, o)
	if err != nil {
		return nil, err
	}
	return cache.New(store, r.Log, paths, r.Config.Cache), nil
}

// keys computes the object keys of levels. The manifest is hashed only when needed.
func (r *Run) keys(ctx context.Context, levels []config.Level) ([]cachekey.Key, error) {
	c := r.Config
	in := cachekey.Inputs{
		Build: cachekey.Build{Organization: r.Job.Organization, Pipeline: r.Job.Pipeline,
			Branch: r.Job.Branch, Step: r.Job.Step},
		Paths: c.Paths, Compression: c.Cache.Compression, KeyExtra: c.KeyExtra,
		OS: runtime.GOOS, Arch: runtime.GOARCH,
	}
	var out []cachekey.Key
	for _, l := range levels {
		if l == config.LevelFile && r.manifestHash == "" {
			h, err := cachekey.HashManifest(ctx, c.Manifest, r.Job.Dir, r.Job.Home)
			if err != nil {
				return nil, err
			}
			r.manifestHash = h
		}
		in.ManifestHash = r.manifestHash
		k, err := cachekey.For(l, c.Prefix, in)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// state is handed from pre-command to post-command.
type state struct {
	SaveKeys []cachekey.Key `json:"save_keys"`
	Hit      cache.Hit      `json:"hit"`
	HitKey   string         `json:"hit_key,omitempty"`
}

// statePath is scoped to the job and to this plugin instance: a step may use the plugin twice.
// It lies in this user's private state directory.
func (r *Run) statePath() string {
	c := r.Config
	doc, _ := json.Marshal([]any{c.Paths, c.Manifest, c.Restore, c.Save, c.KeyExtra, c.Cache.Compression, c.Prefix, c.Store.Bucket})
	sum := sha256.Sum256(doc)
	job := unsafeInName.ReplaceAllString(r.Job.ID, "_")
	return filepath.Join(stateDir(), fmt.Sprintf("s3-cache-%s-%s.json", job, hex.EncodeToString(sum[:8])))
}

func (r *Run) writeState(st state) error {
	doc, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := privateDir(stateDir(), true); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return atomicfile.Write(r.statePath(), doc, 0o600)
}

// readState reads what pre-command left, if this user wrote it: a file in a directory someone
// else controls, or that someone else owns, is ignored with a warning.
func (r *Run) readState() (state, bool) {
	p := r.statePath()
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return state{}, false
	}
	if err == nil {
		err = privateDir(filepath.Dir(p), false)
	}
	if err == nil {
		err = checkPrivate(p, fi, false)
	}
	if err != nil {
		r.Log.Warnf("ignoring the state from pre-command: %v", err)
		return state{}, false
	}
	var st state
	doc, err := os.ReadFile(p)
	if err != nil || json.Unmarshal(doc, &st) != nil {
		return state{}, false
	}
	return st, true
}

// removeState removes the state file, unless its directory is not this user's private one.
func (r *Run) removeState() {
	if privateDir(stateDir(), false) == nil {
		_ = os.Remove(r.statePath())
	}
}
