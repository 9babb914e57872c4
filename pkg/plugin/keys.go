package plugin

// Why a file: the job's description and the configuration become object keys here, and only here.

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"

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

// checkSaveKeys returns an error unless every key is one this build saves under namespace ns: a
// level of the save key, and the very key of that level, except at the file level (whose manifest
// may have changed since pre-command) a member's name in this build's family folder.
func (inv *Invocation) checkSaveKeys(ctx context.Context, keys []cachekey.Key, ns string) error {
	c := inv.Config
	ext := c.Cache.Compression.Extension()
	for _, k := range keys {
		if !slices.Contains(c.Save, k.Level) {
			return fmt.Errorf("%s is not a save level of this step", k.Level)
		}
		if k.Level == config.LevelFile {
			fam, err := inv.family(ctx, ns)
			if err != nil {
				return err
			}
			rest, ok := strings.CutPrefix(k.Name, fam.Name)
			if !ok || len(rest) != 32+len(ext) || !strings.HasSuffix(rest, ext) || strings.Trim(rest[:32], "0123456789abcdef") != "" {
				return fmt.Errorf("%s is not a file-level key of this build", k.Name)
			}
			continue
		}
		want, err := inv.keys(ctx, []config.Level{k.Level}, ns)
		if err != nil {
			return err
		}
		if want[0].Name != k.Name {
			return fmt.Errorf("%s is not this build's %s-level key", k.Name, k.Level)
		}
	}
	return nil
}
