// Command post-command saves the cache after a Buildkite step's command ran.
// It is run by hooks/post-command; see the README.
package main

import (
	"os"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/plugin"
)

func main() {
	os.Exit(plugin.Main("post-command", plugin.PostCommand, os.Args[1:], os.Stdout))
}
