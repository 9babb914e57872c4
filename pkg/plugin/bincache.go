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

// PluginDirEnv names the variable in which the shim passes the plugin's checkout: the hooks,
// lib/shim.bash, and binaries built from source in .s3-cache-bin.
const PluginDirEnv = "S3_CACHE_PLUGIN_DIR"

// checkBinaryCache refuses, as a configuration error, a cache path that is, holds or lies inside
// the agent's cache of the plugin's binaries or the plugin's checkout: restoring there would
// replace the programs and scripts that later hooks run with whatever the cache object holds (a
// branch's build can save any bytes).
func (inv *Invocation) checkBinaryCache() error {
	protected := []struct{ dir, what string }{
		{os.Getenv(BinaryCacheEnv), "where the agent keeps this plugin's binaries"},
		{os.Getenv(PluginDirEnv), "the plugin's own checkout (its hooks and binaries)"},
	}
	for _, p := range inv.Config.Paths {
		abs, err := config.ResolvePath("path", p, inv.Job.Dir, inv.Job.Home)
		if err != nil {
			return err
		}
		for _, d := range protected {
			if d.dir != "" && fspath.OverlapAnyForm(abs, filepath.Clean(d.dir)) {
				return &config.Error{Key: "path", Msg: fmt.Sprintf("%q overlaps %s, %s: a restore there would replace them; cache another directory", p, d.dir, d.what)}
			}
		}
	}
	return nil
}
