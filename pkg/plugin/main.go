package plugin

// Why a file: the command around a hook, and the policy that turns its outcome into an exit status.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/buildkite"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
)

// Main runs hook as a command and returns its exit status.
func Main(name string, hook Hook, args []string, stdout io.Writer) int {
	return run(name, hook, args, stdout, nil)
}

// memoryLimit is the soft limit of the Go heap of a hook, and gcPercent its collector's target
// (GOGC). What a save or a restore holds at once is bounded by its buffers (upload parts, zstd
// frames; download ranges, the writer pool: under 200 MiB at the default concurrency
// and part size, docs/design.md#performance-and-memory), and nearly all of it is byte buffers the
// collector does not scan, so a collection costs little. Garbage costs more: the collector's
// default lets the heap grow to twice what is live, and every page the heap grows into is a page
// fault, which on a virtual machine is dearer than the copy that fills it (a save of node_modules
// faulted in 190 MiB, a second of CPU on the project's 2-core VM). So a hook collects once garbage
// reaches a quarter of the live heap, and the soft limit caps the heap whatever it holds.
const (
	memoryLimit = 224 << 20
	gcPercent   = 25
)

// limitMemory sets the collector's target and the soft memory limit, unless GOGC or GOMEMLIMIT
// already chose them.
func limitMemory() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(gcPercent)
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		debug.SetMemoryLimit(memoryLimit)
	}
}

// run is Main with the way the hook builds its cache (nil: the configured one).
func run(name string, hook Hook, args []string, stdout io.Writer, newCache func(context.Context) (hookCache, error)) int {
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
	limitMemory()

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
	inv := &Invocation{Config: cfg, Job: job, Log: log, Outputs: map[string]string{}, newCache: newCache}
	if _, err := inv.cachePaths(); err != nil { // before a hook touches anything
		log.Errorf("invalid configuration: %v", err)
		return 1
	}
	err = hook(ctx, inv)
	if *envFile != "" && ctx.Err() == nil { // a cancelled job runs no command to export to
		if werr := writeEnvFile(*envFile, inv.Outputs); werr != nil {
			err = errors.Join(err, werr)
		}
	}
	return exitStatus(name, err, ctx.Err() != nil, cfg.SoftFail, log)
}

// exitStatus is the failure policy (see the package doc): configuration errors, a miss under
// fail-on-cache-miss and cancellation fail the hook; other errors fail it only when soft-fail
// is off.
func exitStatus(name string, err error, cancelled, softFail bool, log *buildkite.Log) int {
	var cerr *config.Error
	var miss *missError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &cerr):
		log.Errorf("invalid configuration: %v", err)
		return 1
	case errors.As(err, &miss) && !cancelled:
		log.Errorf("%v", err)
		return 1
	case cancelled:
		log.Warnf("%s cancelled: %v", name, err)
		return 1
	case softFail:
		log.Warnf("%v (the build goes on: soft-fail is on)", err)
		return 0
	default:
		log.Errorf("%v", err)
		return 1
	}
}
