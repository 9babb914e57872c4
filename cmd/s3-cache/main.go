// Command s3-cache shows and evicts the caches of the s3-cache Buildkite plugin in a bucket:
// `s3-cache ls`, `s3-cache gc`, `s3-cache help` (see pkg/inventory).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/inventory"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/plugin"
)

func main() {
	// SIGTERM (a cancelled Buildkite job) stops between requests; what gc deleted stays deleted.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	c := &inventory.Command{Stdout: os.Stdout, Stderr: os.Stderr, Environ: os.Environ(), Version: plugin.Version}
	status := c.Main(ctx, os.Args[1:])
	stop()
	os.Exit(status)
}
