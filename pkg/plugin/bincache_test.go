package plugin

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/buildkite"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/s3"
)

func TestACachePathOverlappingTheBinaryCacheIsAConfigurationError(t *testing.T) {
	home := t.TempDir()
	bin := filepath.Join(home, ".cache", "s3-cache", "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	// A symlink to ~/.cache, as some agents have: caching it is caching ~/.cache.
	if err := os.Symlink(filepath.Join(home, ".cache"), filepath.Join(home, "cache-link")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, binDir string
		refused      bool
	}{
		{"~/.cache", bin, true},
		{"~/.cache/s3-cache", bin, true},
		{"~/.cache/s3-cache/bin", bin, true},
		{"~/.cache/s3-cache/bin/", bin + "/", true},
		{"~/.cache/s3-cache/bin/abc/v1.0.0", bin, true},
		{"~", bin, true},
		{"~/cache-link", bin, true},
		{filepath.Join(home, ".cache"), bin, true},
		{"../../" + filepath.Join(home, ".cache")[1:], bin, true}, // relative to the checkout /co/x
		{"~/.cache/go-build", bin, false},
		{"~/.cache/s3-cache-other", bin, false},
		{"~/.cache", "", false}, // no binary cache (S3_CACHE_BIN_DIR, go build): nothing to protect
	} {
		t.Setenv(BinaryCacheEnv, tc.binDir)
		r := &Invocation{Config: &config.Config{Paths: []string{"vendor", tc.path}, Store: s3.Options{Bucket: "b"}},
			Job: buildkite.Job{Dir: "/co/x", Home: home}, Log: buildkite.NewLog(io.Discard)}
		err := r.checkBinaryCache()
		var ce *config.Error
		if refused := errors.As(err, &ce) && ce.Key == "path"; refused != tc.refused {
			t.Errorf("path %q, binary cache %q: %v, want refused %v", tc.path, tc.binDir, err, tc.refused)
		}
	}
}

// The plugin's checkout holds the hooks, lib/shim.bash and binaries built from source: a cache
// path over it could plant a shim that a later job sources.
func TestACachePathOverlappingThePluginCheckoutIsAConfigurationError(t *testing.T) {
	home := t.TempDir()
	plugins := filepath.Join(home, "plugins")
	checkout := filepath.Join(plugins, "github-com-s3-cache-s3-cache-buildkite-plugin-v1-0-0")
	if err := os.MkdirAll(checkout, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(BinaryCacheEnv, "")
	for _, tc := range []struct {
		path, pluginDir string
		refused         bool
	}{
		{"~/plugins", checkout, true},
		{filepath.Join(checkout, "lib"), checkout, true},
		{filepath.Join(checkout, ".s3-cache-bin"), checkout, true},
		{"~/.npm", checkout, false},
		{"~/plugins", "", false}, // the variable unset (an older shim): nothing known to protect
	} {
		t.Setenv(PluginDirEnv, tc.pluginDir)
		r := &Invocation{Config: &config.Config{Paths: []string{tc.path}, Store: s3.Options{Bucket: "b"}},
			Job: buildkite.Job{Dir: "/co/x", Home: home}, Log: buildkite.NewLog(io.Discard)}
		err := r.checkBinaryCache()
		var ce *config.Error
		if refused := errors.As(err, &ce) && ce.Key == "path"; refused != tc.refused {
			t.Errorf("path %q, plugin dir %q: %v, want refused %v", tc.path, tc.pluginDir, err, tc.refused)
		}
	}
}
