// Command pre-command restores the cache before a Buildkite step's command runs.
// It is run by hooks/pre-command; see the README.
package main

import (
	"os"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/plugin"
)

func main() {
	os.Exit(plugin.Main("pre-command", plugin.PreCommand, os.Args[1:], os.Stdout))
}
