package plugin

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
)

// BinaryCacheEnv names the variable in which the shim passes the directory where the agent
// caches this plugin's release binaries.
const BinaryCacheEnv = "S3_CACHE_BINARY_CACHE_DIR"

// checkBinaryCache refuses, as a configuration error, a cache path that is, holds or lies inside
// the agent's cache of the plugin's binaries: restoring there would replace the programs that
// later hooks run with whatever the cache object holds (a branch's build can save any bytes).
func (r *Run) checkBinaryCache() error {
	bin := os.Getenv(BinaryCacheEnv)
	if bin == "" {
		return nil
	}
	bins := resolved(filepath.Clean(bin))
	for _, p := range r.Config.Paths {
		for _, a := range resolved(config.ResolvePath(p, r.Job.Dir, r.Job.Home)) {
			for _, b := range bins {
				if within(a, b) || within(b, a) {
					return &config.Error{Key: "path", Msg: fmt.Sprintf("%q overlaps %s, where the agent keeps this plugin's binaries: a restore there would replace them; cache another directory", p, bin)}
				}
			}
		}
	}
	return nil
}

// resolved is p, and p with its symlinks resolved when that differs.
func resolved(p string) []string {
	if real, err := filepath.EvalSymlinks(p); err == nil && real != p {
		return []string{p, real}
	}
	return []string{p}
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, string(filepath.Separator))+string(filepath.Separator))
}
