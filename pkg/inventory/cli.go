package inventory

// Why a file: the s3-cache command's flags, usage texts and exit codes; cmd/s3-cache only calls Main.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/s3"
)

// Exit statuses of the command.
const (
	ExitOK      = 0 // done (gc: everything planned was deleted)
	ExitRuntime = 1 // the bucket could not be listed or something could not be deleted
	ExitUsage   = 2 // bad flags, arguments or configuration: nothing was done
)

// Command is one run of the s3-cache command.
type Command struct {
	Stdout, Stderr io.Writer
	Environ        []string         // os.Environ(): BUILDKITE_PLUGIN_S3_CACHE_* fill in what flags do not say
	Now            func() time.Time // gc's clock; nil: time.Now
	Version        string
}

const mainUsage = `NAME
    s3-cache - see and evict the caches of the s3-cache Buildkite plugin

SYNOPSIS
    s3-cache ls [flags]
    s3-cache gc [flags]
    s3-cache help [ls|gc]
    s3-cache version

DESCRIPTION
    The plugin's hooks restore and save caches; this command is for the people who run the
    bucket. ls shows what the bucket holds: every cache with its organisation, pipeline, level,
    branch or step, namespace, size, save time and last restore. gc deletes the least recently
    used caches first, until the caches fit --max-size and none is unused for --unused-for,
    never one used within --keep-recent.

    Restores record their use in small marker objects below <prefix>/.s3-cache-used/ (at most
    one per cache, hour and agent); ls and gc read them in the same listing as the caches.

    Every subcommand takes --help.

CONNECTION FLAGS (every subcommand)
    --bucket, --prefix, --endpoint, --region, --profile
        Where the caches are. Each falls back to the variable the hooks read:
        BUILDKITE_PLUGIN_S3_CACHE_BUCKET, _PREFIX, _ENDPOINT, _REGION, _PROFILE; the other
        store keys (_FORCE_PATH_STYLE, _RETRIES, _SSE, ...) are read from there too, so an
        agent's environment works as it is. Credentials come from the AWS SDK's default chain.

EXIT STATUS
    0   success
    1   runtime error: the bucket could not be listed, or something could not be deleted
    2   usage error: unknown flag, bad value, missing bucket; nothing was done
`

const lsUsage = `NAME
    s3-cache ls - list the caches in the bucket

SYNOPSIS
    s3-cache ls [--org ORG] [--pipeline PIPELINE] [--level LEVEL] [--branch BRANCH]
                [--sort key|size|age|used] [--json] [connection flags]

DESCRIPTION
    Lists every object below the prefix (one ListObjectsV2 pass) with what its name says: the
    organisation, pipeline, level (file, step, branch, pipeline, all), branch or step, file-level
    family and namespace (isolated builds), its size, when it was saved and when it was last
    restored ("never" when no restore recorded it). An object whose name is not a cache's is
    shown with level "unknown". A table is followed by totals per organisation, pipeline and
    level, and the grand total.

FLAGS
    --org ORG             only this organisation (its slug)
    --pipeline PIPELINE   only this pipeline (its slug); the shared all level has none
    --level LEVEL         only this level: file, step, branch, pipeline, all or unknown
    --branch BRANCH       only the branch level's caches of BRANCH and every cache of BRANCH's
                          own namespace (as BUILDKITE_BRANCH names it, or its slug)
    --sort ORDER          key (default: the listing's order), size (largest first), age
                          (oldest saved first), used (least recently used first: gc's order)
    --json                one JSON object per cache and line, no totals. Fields (stable):
                            key        the object key
                            org        organisation slug
                            pipeline   pipeline slug (absent for the shared all level)
                            level      file, step, branch, pipeline, all or unknown
                            branch     branch folder (branch level)
                            step       step folder (step level)
                            family     family folder (file level)
                            namespace  the isolated namespace (absent: shared)
                            size       bytes
                            saved_at   RFC 3339, UTC (the object's LastModified)
                            last_used  RFC 3339, UTC, of the newest use marker (absent: never)
                          Absent fields are empty; new fields may be added.

EXIT STATUS
    0 listed; 1 the listing failed; 2 usage error.
`

const gcUsage = `NAME
    s3-cache gc - delete the least recently used caches

SYNOPSIS
    s3-cache gc [--max-size SIZE] [--unused-for AGE] [--keep-recent AGE] [--dry-run]
                [connection flags]

DESCRIPTION
    Lists the prefix once, then deletes caches in order of last use (their newest use marker,
    else their save time), oldest first: every cache unused for longer than --unused-for, then
    more until the caches hold at most --max-size. A cache used or saved within --keep-recent is
    never deleted, whatever the budget, so the caches may stay above --max-size. Objects whose
    names are not caches' are never deleted and do not count. It also deletes use markers of
    caches that are gone and all but the newest marker of each cache, and aborts incomplete
    multipart uploads initiated more than a day ago. It prints one line per deletion and a
    summary with the bytes freed. Deletions are DeleteObjects calls of up to 1,000 keys.

    A restore that loses its object to gc mid-download is a miss, never a damaged tree.

FLAGS
    --max-size SIZE       the most the caches may hold, e.g. 500GiB, 10GB, 750MiB (default: no limit)
    --unused-for AGE      delete caches not used for this long, e.g. 7d, 36h (default: no limit)
    --keep-recent AGE     never delete a cache used within this (default 1h)
    --dry-run             print exactly what would be deleted and the bytes freed; delete nothing

PERMISSIONS
    s3:ListBucket and s3:ListBucketMultipartUploads on the bucket, s3:DeleteObject and
    s3:AbortMultipartUpload on <prefix>/* (the README has the policy).

EXIT STATUS
    0 done; 1 the listing or a deletion failed (what could be done was done); 2 usage error.
`

// Main runs the command with args (without the program name) and returns its exit status.
func (c *Command) Main(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.Stderr, mainUsage)
		return ExitUsage
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "ls":
		return c.ls(ctx, rest)
	case "gc":
		return c.gc(ctx, rest)
	case "help", "-h", "-help", "--help":
		switch {
		case len(rest) == 0:
			fmt.Fprint(c.Stdout, mainUsage)
		case rest[0] == "ls":
			fmt.Fprint(c.Stdout, lsUsage)
		case rest[0] == "gc":
			fmt.Fprint(c.Stdout, gcUsage)
		default:
			fmt.Fprintf(c.Stderr, "s3-cache: no help for %q: the subcommands are ls and gc\n", rest[0])
			return ExitUsage
		}
		return ExitOK
	case "version", "--version":
		fmt.Fprintf(c.Stdout, "s3-cache %s\n", c.Version)
		return ExitOK
	default:
		fmt.Fprintf(c.Stderr, "s3-cache: unknown subcommand %q: want ls, gc or help\n", sub)
		return ExitUsage
	}
}

// connection holds the connection flags.
type connection struct {
	bucket, prefix, endpoint, region, profile string
}

// flags returns the flag set of a subcommand with the connection flags, printing usage on --help.
func (c *Command) flags(name, usage string) (*flag.FlagSet, *connection) {
	fs := flag.NewFlagSet("s3-cache "+name, flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), usage) }
	var conn connection
	fs.StringVar(&conn.bucket, "bucket", "", "the bucket (default $BUILDKITE_PLUGIN_S3_CACHE_BUCKET)")
	fs.StringVar(&conn.prefix, "prefix", "", "the key prefix (default $BUILDKITE_PLUGIN_S3_CACHE_PREFIX)")
	fs.StringVar(&conn.endpoint, "endpoint", "", "an S3-compatible endpoint (default $BUILDKITE_PLUGIN_S3_CACHE_ENDPOINT)")
	fs.StringVar(&conn.region, "region", "", "the bucket's region (default $BUILDKITE_PLUGIN_S3_CACHE_REGION)")
	fs.StringVar(&conn.profile, "profile", "", "a shared-config profile (default $BUILDKITE_PLUGIN_S3_CACHE_PROFILE)")
	return fs, &conn
}

// parse parses args; done is set with the exit status when there is nothing more to do.
func (c *Command) parse(fs *flag.FlagSet, args []string, usage string) (status int, done bool) {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(c.Stdout, usage)
		return ExitOK, true
	case err != nil:
		return ExitUsage, true // the flag package said what was wrong
	case fs.NArg() > 0:
		fmt.Fprintf(c.Stderr, "%s: unexpected argument %q (see --help)\n", fs.Name(), fs.Arg(0))
		return ExitUsage, true
	}
	return 0, false
}

// open builds the store the flags and the environment describe, and the prefix.
func (c *Command) open(ctx context.Context, name string, conn *connection) (*s3.Store, string, int) {
	o, prefix, err := config.StoreFromEnv(c.Environ)
	if err != nil {
		fmt.Fprintf(c.Stderr, "s3-cache %s: invalid configuration in the environment: %v\n", name, err)
		return nil, "", ExitUsage
	}
	// Flags win over the environment.
	if conn.bucket != "" {
		o.Bucket = conn.bucket
	}
	if conn.prefix != "" {
		prefix = strings.Trim(conn.prefix, "/")
	}
	if conn.endpoint != "" {
		o.Endpoint = conn.endpoint
	}
	if conn.region != "" {
		o.Region = conn.region
	}
	if conn.profile != "" {
		o.Profile = conn.profile
	}
	if o.Bucket == "" {
		fmt.Fprintf(c.Stderr, "s3-cache %s: no bucket: give --bucket or set %sBUCKET\n", name, config.Prefix)
		return nil, "", ExitUsage
	}
	store, err := s3.New(ctx, o)
	if err != nil {
		fmt.Fprintf(c.Stderr, "s3-cache %s: %v\n", name, err)
		return nil, "", ExitRuntime
	}
	return store, prefix, 0
}

func (c *Command) ls(ctx context.Context, args []string) int {
	fs, conn := c.flags("ls", lsUsage)
	var f Filter
	fs.StringVar(&f.Org, "org", "", "only this organisation")
	fs.StringVar(&f.Pipeline, "pipeline", "", "only this pipeline")
	fs.StringVar(&f.Level, "level", "", "only this level")
	fs.StringVar(&f.Branch, "branch", "", "only this branch")
	sort := fs.String("sort", "key", "key, size, age or used")
	asJSON := fs.Bool("json", false, "one JSON object per cache and line")
	if status, done := c.parse(fs, args, lsUsage); done {
		return status
	}
	if f.Level != "" && !slices.Contains(Levels, f.Level) {
		fmt.Fprintf(c.Stderr, "s3-cache ls: --level %q: want one of %s\n", f.Level, strings.Join(Levels, ", "))
		return ExitUsage
	}
	if !slices.Contains(Sorts, *sort) {
		fmt.Fprintf(c.Stderr, "s3-cache ls: --sort %q: want one of %s\n", *sort, strings.Join(Sorts, ", "))
		return ExitUsage
	}
	store, prefix, status := c.open(ctx, "ls", conn)
	if store == nil {
		return status
	}
	inv, err := Load(ctx, store, prefix)
	if err != nil {
		fmt.Fprintf(c.Stderr, "s3-cache ls: %v\n", err)
		return ExitRuntime
	}
	cs := inv.Select(f)
	Sort(cs, *sort)
	if *asJSON {
		err = WriteJSON(c.Stdout, cs)
	} else {
		err = WriteTable(c.Stdout, cs)
	}
	if err != nil {
		fmt.Fprintf(c.Stderr, "s3-cache ls: %v\n", err)
		return ExitRuntime
	}
	return ExitOK
}

func (c *Command) gc(ctx context.Context, args []string) int {
	fs, conn := c.flags("gc", gcUsage)
	var maxSize config.Size
	fs.Var(flagFunc(maxSize.Decode), "max-size", "the most the caches may hold")
	var unused, keep time.Duration
	keep = DefaultKeepRecent
	fs.Var(flagFunc(func(s string) (err error) { unused, err = ParseAge(s); return }), "unused-for", "delete caches unused this long")
	fs.Var(flagFunc(func(s string) (err error) { keep, err = ParseAge(s); return }), "keep-recent", "never delete caches used this recently")
	dryRun := fs.Bool("dry-run", false, "print the plan, delete nothing")
	if status, done := c.parse(fs, args, gcUsage); done {
		return status
	}
	store, prefix, status := c.open(ctx, "gc", conn)
	if store == nil {
		return status
	}
	now := c.Now
	if now == nil {
		now = time.Now
	}
	_, err := GC(ctx, store, prefix, GCOptions{MaxSize: int64(maxSize), UnusedFor: unused, KeepRecent: keep,
		DryRun: *dryRun, Now: now}, c.Stdout)
	if err != nil {
		fmt.Fprintf(c.Stderr, "s3-cache gc: %v\n", err)
		return ExitRuntime
	}
	return ExitOK
}

// flagFunc is a flag.Value that parses with a function (flag.Func without the flag set's name).
type flagFunc func(string) error

func (f flagFunc) Set(s string) error { return f(s) }
func (f flagFunc) String() string     { return "" }
