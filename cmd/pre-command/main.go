// Command pre-command restores the cache before a Buildkite step's command runs.
// It is run by hooks/pre-command; see the README.
package main

import (
	"os"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/profile"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/plugin"
)

func main() {
	stop := profile.Start("pre-command") // a no-op unless built with -tags pprof
	code := plugin.Main("pre-command", plugin.PreCommand, os.Args[1:], os.Stdout)
	stop()
	os.Exit(code)
}
