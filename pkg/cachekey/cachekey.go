// Package cachekey computes the content-addressed object keys a cache is restored from and saved
// under (docs/design.md#keys).
//
// A key is a pure function of its inputs: the level's base (the manifest's content hash for
// file; the step for step; the branch for branch; the pipeline for pipeline; the organisation
// for all), the cached paths as configured, the compression, the archive format version, the
// agent's OS and architecture, and key-extra. The same inputs give the same key on every agent,
// which is why parallel jobs race to save the same object, and why a retried download of a key
// yields identical contents.
//
// Object names are browsable with ordinary S3 tools:
//
//	<prefix>/<organisation>/<pipeline>/file/<hash><ext>
//	<prefix>/<organisation>/<pipeline>/step/<step>/<hash><ext>
//	<prefix>/<organisation>/<pipeline>/branch/<branch>/<hash><ext>
//	<prefix>/<organisation>/<pipeline>/pipeline/<hash><ext>
//	<prefix>/<organisation>/all/<hash><ext>
//
// The readable parts are slugs for people and lifecycle rules; the hash alone identifies the
// contents, so two branches whose names slug alike never share an object.
package cachekey

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"strings"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/archive"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
)

// FormatVersion is mixed into every key. Bump it when the archive layout changes, so that old
// objects are never restored by a binary that would read them differently.
//
// 2: archives end with a checksum trailer, which Extract requires (version 1 archives have none).
const FormatVersion = 2

// Build describes the Buildkite job, from its BUILDKITE_* variables.
type Build struct {
	Organization string // BUILDKITE_ORGANIZATION_SLUG
	Pipeline     string // BUILDKITE_PIPELINE_SLUG
	Branch       string // BUILDKITE_BRANCH
	Step         string // BUILDKITE_STEP_KEY, or BUILDKITE_LABEL when the step has no key
}

// Inputs are everything besides the level that a key depends on.
type Inputs struct {
	Build        Build
	Paths        []string // as configured, so that "~/.npm" matches on agents with other homes
	Compression  archive.Compression
	KeyExtra     string
	OS, Arch     string // runtime.GOOS, runtime.GOARCH
	ManifestHash string // hex SHA-256 of the manifest; needed for the file level only
}

// Key is one object key and the level it belongs to.
type Key struct {
	Level config.Level `json:"level"`
	Name  string       `json:"name"`
}

// For returns the object key for level under prefix.
func For(level config.Level, prefix string, in Inputs) (Key, error) {
	var base, folder string
	org, pipe := slug(in.Build.Organization), slug(in.Build.Pipeline)
	switch level {
	case config.LevelFile:
		if in.ManifestHash == "" {
			return Key{}, fmt.Errorf("file level key: no manifest hash")
		}
		base, folder = in.ManifestHash, path.Join(org, pipe, "file")
	case config.LevelStep:
		base, folder = in.Build.Step, path.Join(org, pipe, "step", slug(in.Build.Step))
	case config.LevelBranch:
		base, folder = in.Build.Branch, path.Join(org, pipe, "branch", slug(in.Build.Branch))
	case config.LevelPipeline:
		folder = path.Join(org, pipe, "pipeline")
	case config.LevelAll:
		folder = path.Join(org, "all")
	default:
		return Key{}, fmt.Errorf("key for unknown level %q", level)
	}
	// Canonical JSON of every input: unambiguous, unlike string concatenation.
	doc, err := json.Marshal(struct {
		Version     int      `json:"v"`
		Level       string   `json:"level"`
		Org         string   `json:"org"`
		Pipeline    string   `json:"pipeline,omitempty"`
		Base        string   `json:"base,omitempty"`
		Paths       []string `json:"paths"`
		Compression string   `json:"compression"`
		OS          string   `json:"os"`
		Arch        string   `json:"arch"`
		KeyExtra    string   `json:"extra,omitempty"`
	}{FormatVersion, string(level), in.Build.Organization, pipelineOf(level, in.Build.Pipeline), base,
		in.Paths, string(in.Compression), in.OS, in.Arch, in.KeyExtra})
	if err != nil {
		return Key{}, fmt.Errorf("key for level %s: %w", level, err)
	}
	sum := sha256.Sum256(doc)
	name := path.Join(folder, hex.EncodeToString(sum[:16])) + in.Compression.Extension()
	if prefix != "" {
		name = strings.Trim(prefix, "/") + "/" + name
	}
	return Key{Level: level, Name: name}, nil
}

// pipelineOf keeps the pipeline out of the all level's hash: that level is shared by every
// pipeline of the organisation.
func pipelineOf(level config.Level, pipeline string) string {
	if level == config.LevelAll {
		return ""
	}
	return pipeline
}

// slug makes s safe and readable as one segment of an object name: runs of other characters
// become one "-".
func slug(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range s {
		if b.Len() >= 64 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
			dash = false
		case !dash:
			b.WriteByte('-')
			dash = true
		}
	}
	out := strings.Trim(b.String(), ".-")
	if out == "" {
		return "_"
	}
	return out
}
