package inventory

import (
	"bytes"
	"strings"
	"testing"
)

// Usage and its errors, without a bucket: every subcommand has --help, and bad input exits 2
// with a message naming the flag and what is allowed.
func TestCommandUsage(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		env    []string
		status int
		out    string // in stdout
		errs   string // in stderr
	}{
		{nil, nil, ExitUsage, "", "SYNOPSIS"},
		{[]string{"help"}, nil, ExitOK, "EXIT STATUS", ""},
		{[]string{"--help"}, nil, ExitOK, "s3-cache ls [flags]", ""},
		{[]string{"help", "gc"}, nil, ExitOK, "s3-cache gc - delete", ""},
		{[]string{"help", "nope"}, nil, ExitUsage, "", `no help for "nope"`},
		{[]string{"ls", "--help"}, nil, ExitOK, "last_used", ""},
		{[]string{"ls", "-h"}, nil, ExitOK, "--branch BRANCH", ""},
		{[]string{"gc", "--help"}, nil, ExitOK, "--keep-recent AGE", ""},
		{[]string{"version"}, nil, ExitOK, "s3-cache v9", ""},
		{[]string{"rm"}, nil, ExitUsage, "", `unknown subcommand "rm"`},
		{[]string{"ls", "--nope"}, nil, ExitUsage, "", "flag provided but not defined: -nope"},
		{[]string{"ls", "extra"}, nil, ExitUsage, "", `unexpected argument "extra"`},
		{[]string{"ls", "--level", "bogus"}, nil, ExitUsage, "", "want one of file, step, branch, pipeline, all, unknown"},
		{[]string{"ls", "--sort", "name"}, nil, ExitUsage, "", "want one of key, size, age, used"},
		{[]string{"ls"}, nil, ExitUsage, "", "no bucket: give --bucket or set BUILDKITE_PLUGIN_S3_CACHE_BUCKET"},
		{[]string{"gc", "--max-size", "lots"}, nil, ExitUsage, "", `invalid size "lots"`},
		{[]string{"gc", "--unused-for", "1w"}, nil, ExitUsage, "", "want days (7d)"},
		{[]string{"gc", "--keep-recent", "-1h"}, nil, ExitUsage, "", "want days (7d)"},
		{[]string{"gc", "--bucket", "b"}, []string{"BUILDKITE_PLUGIN_S3_CACHE_RETRIES=lots"}, ExitUsage, "", "invalid configuration in the environment"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errs bytes.Buffer
			c := &Command{Stdout: &out, Stderr: &errs, Environ: tc.env, Version: "v9"}
			if st := c.Main(t.Context(), tc.args); st != tc.status || !strings.Contains(out.String(), tc.out) ||
				!strings.Contains(errs.String(), tc.errs) {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", st, tc.status, out.String(), errs.String())
			}
		})
	}
}
