package plugin

// Why a file: the job's description and the configuration become object keys here, and only here.

import (
	"context"
	"runtime"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cachekey"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
)

// keys computes the object keys of levels in namespace ns ("": the shared one). The manifest is
// hashed only when needed.
func (inv *Invocation) keys(ctx context.Context, levels []config.Level, ns string) ([]cachekey.Key, error) {
	c := inv.Config
	in := cachekey.Inputs{
		Build: cachekey.Build{Organization: inv.Job.Organization, Pipeline: inv.Job.Pipeline,
			Branch: inv.Job.Branch, Step: inv.Job.Step, Namespace: ns},
		Paths: c.Paths, Compression: c.Cache.Compression, KeyExtra: c.KeyExtra,
		OS: runtime.GOOS, Arch: runtime.GOARCH,
	}
	var out []cachekey.Key
	for _, l := range levels {
		if l == config.LevelFile && inv.manifestHash == "" {
			h, err := cachekey.HashManifest(ctx, c.Manifest, inv.Job.Dir, inv.Job.Home)
			if err != nil {
				return nil, err
			}
			inv.manifestHash = h
		}
		in.ManifestHash = inv.manifestHash
		k, err := cachekey.For(l, c.Prefix, in)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}
