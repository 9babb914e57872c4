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
	var out []cachekey.Key
	for _, l := range levels {
		in, err := inv.inputs(ctx, ns, l == config.LevelFile)
		if err != nil {
			return nil, err
		}
		k, err := cachekey.For(l, inv.Config.Prefix, in)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// family is the file-level family of namespace ns: the newest-match fallback's candidate.
func (inv *Invocation) family(ctx context.Context, ns string) (cachekey.Key, error) {
	in, err := inv.inputs(ctx, ns, false)
	if err != nil {
		return cachekey.Key{}, err
	}
	return cachekey.Family(inv.Config.Prefix, in)
}

// inputs are the key inputs of namespace ns, with the manifest's hash when manifest is set.
func (inv *Invocation) inputs(ctx context.Context, ns string, manifest bool) (cachekey.Inputs, error) {
	c := inv.Config
	if manifest && inv.manifestHash == "" {
		h, err := cachekey.HashManifest(ctx, c.Manifest, inv.Job.Dir, inv.Job.Home)
		if err != nil {
			return cachekey.Inputs{}, err
		}
		inv.manifestHash = h
	}
	return cachekey.Inputs{
		Build: cachekey.Build{Organization: inv.Job.Organization, Pipeline: inv.Job.Pipeline,
			Branch: inv.Job.Branch, Step: inv.Job.Step, Namespace: ns},
		Paths: c.Paths, Compression: c.Cache.Compression, KeyExtra: c.KeyExtra,
		OS: runtime.GOOS, Arch: runtime.GOARCH, ManifestHash: inv.manifestHash,
	}, nil
}
