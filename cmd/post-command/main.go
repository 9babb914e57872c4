// Command post-command saves the cache after a Buildkite step's command ran.
// It is run by hooks/post-command; see the README.
package main

import (
	"os"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/profile"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/plugin"
)

func main() {
	stop := profile.Start("post-command") // a no-op unless built with -tags pprof
	code := plugin.Main("post-command", plugin.PostCommand, os.Args[1:], os.Stdout)
	stop()
	os.Exit(code)
}
