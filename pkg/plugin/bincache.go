package plugin

// Why a file: a configuration check that needs the shim's view of where the binaries live.

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/fspath"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
)

// BinaryCacheEnv names the variable in which the shim passes the directory where the agent
// caches this plugin's release binaries.
const BinaryCacheEnv = "S3_CACHE_BINARY_CACHE_DIR"

// checkBinaryCache refuses, as a configuration error, a cache path that is, holds or lies inside
// the agent's cache of the plugin's binaries: restoring there would replace the programs that
// later hooks run with whatever the cache object holds (a branch's build can save any bytes).
func (inv *Invocation) checkBinaryCache() error {
	bin := os.Getenv(BinaryCacheEnv)
	if bin == "" {
		return nil
	}
	bins := fspath.Forms(filepath.Clean(bin))
	for _, p := range inv.Config.Paths {
		abs, err := config.ResolvePath("path", p, inv.Job.Dir, inv.Job.Home)
		if err != nil {
			return err
		}
		for _, a := range fspath.Forms(abs) {
			for _, b := range bins {
				if fspath.Overlap(a, b) {
					return &config.Error{Key: "path", Msg: fmt.Sprintf("%q overlaps %s, where the agent keeps this plugin's binaries: a restore there would replace them; cache another directory", p, bin)}
				}
			}
		}
	}
	return nil
}
