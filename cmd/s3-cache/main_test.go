package main

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The built command: --help on every subcommand, and the documented exit statuses (0 ok, 1 runtime
// error, 2 usage error).
func TestBinaryHelpAndExitStatus(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command: run without -short")
	}
	bin := filepath.Join(t.TempDir(), "s3-cache")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(build.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		args   []string
		status int
		out    string
	}{
		{[]string{"--help"}, 0, "EXIT STATUS"},
		{[]string{"help", "ls"}, 0, "s3-cache ls - list"},
		{[]string{"ls", "--help"}, 0, "--json"},
		{[]string{"gc", "--help"}, 0, "--dry-run"},
		{[]string{"version"}, 0, "s3-cache dev"},
		{nil, 2, "SYNOPSIS"},
		{[]string{"bogus"}, 2, `unknown subcommand "bogus"`},
		{[]string{"gc", "--max-size", "10 parsecs"}, 2, "invalid size"},
		{[]string{"ls"}, 2, "no bucket"},
		// Nothing listens on port 1: the listing fails.
		{[]string{"ls", "--bucket", "b", "--endpoint", "http://127.0.0.1:1", "--region", "us-east-1"}, 1, "connection refused"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			cmd.Env = []string{"AWS_ACCESS_KEY_ID=a", "AWS_SECRET_ACCESS_KEY=b", "AWS_CONFIG_FILE=/nonexistent",
				"AWS_SHARED_CREDENTIALS_FILE=/nonexistent", "BUILDKITE_PLUGIN_S3_CACHE_RETRIES=1"}
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if err != nil && !errors.As(err, &ee) {
				t.Fatal(err)
			}
			if code := cmd.ProcessState.ExitCode(); code != tc.status || !strings.Contains(string(out), tc.out) {
				t.Fatalf("exit %d, want %d; output:\n%s", code, tc.status, out)
			}
		})
	}
}
