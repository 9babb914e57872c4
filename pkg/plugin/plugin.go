// Package plugin runs the plugin's hooks: it reads the configuration and the job, computes the
// keys, restores in pre-command and saves in post-command, and tells the shim what to export.
//
// Failure policy: configuration errors (unknown keys, invalid values, a path a restore would
// destroy, a manifest that matches nothing) always fail the hook with exit 1 before anything is
// touched. Runtime errors (an
// unreachable endpoint, missing credentials, a failed transfer) are warnings and exit 0 unless
// soft-fail is false: a cache must never break a build by default. A restore that fails is a
// miss; with fail-on-cache-miss a miss fails pre-command (exit 1) whatever soft-fail says. The
// summary on the build page (the annotate key) never fails a hook: a missing buildkite-agent
// skips it, a failing or hanging one (stopped after a few seconds) is a warning. The state file
// that carries keys from pre-command to post-command is written atomically
// in a directory private to the job's user (<TMPDIR>/s3-cache-<uid>, 0700; anything else there is
// refused, and a state file this user does not own is ignored) and removed by post-command.
//
// The files follow the jobs: main.go is the command (flags, exit policy), hooks.go the two
// hooks, scope.go which namespaces a build restores from and saves to (isolation), keys.go the
// object keys, newcache.go the cache the configuration describes, state.go
// the state file's whole life and private.go the checks of its directory, envfile.go what the
// shim exports, annotate.go the summary on the build page, bincache.go the guard of the agent's
// copy of this plugin's binaries.
package plugin

import (
	"context"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/buildkite"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
)

// Version is stamped at build time with -ldflags "-X .../pkg/plugin.Version=v1.2.3".
var Version = "dev"

// Hook is one of the plugin's hooks.
type Hook func(ctx context.Context, inv *Invocation) error

// Invocation is one hook run for one instance of the plugin in a job (a step may use the plugin
// twice): its configuration, the job, the log, and what it exports. Main builds it; a Hook uses it.
type Invocation struct {
	Config  *config.Config
	Job     buildkite.Job
	Log     *buildkite.Log
	Outputs map[string]string // exported to the command by the shim

	manifestHash string // computed once, when a file-level key is first needed
	// newCache, when set, builds the cache the hooks restore and save instead of the configured
	// one (buildCache): the seam through which tests run the hooks against a fake.
	newCache func(ctx context.Context) (hookCache, error)
	// usage writes the last-use markers of the configured cache's hits (nil until it is built).
	usage *usage
}
