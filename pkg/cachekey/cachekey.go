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
//	<prefix>/<organisation>/<pipeline>/file/<family>/<hash><ext>
//	<prefix>/<organisation>/<pipeline>/step/<step>/<hash><ext>
//	<prefix>/<organisation>/<pipeline>/branch/<branch>/<hash><ext>
//	<prefix>/<organisation>/<pipeline>/pipeline/<hash><ext>
//	<prefix>/<organisation>/all/<hash><ext>
//
// Those are the shared namespace's (Build.Namespace ""), which the default branch writes. A build
// isolated in a namespace of its own (a branch, a pull request: see BranchNamespace and
// PullRequestNamespace) has its keys below <prefix>/<organisation>/<pipeline>/ns/<namespace>/,
// with the same level folders (the all level too, there scoped to the pipeline), and the
// namespace is hashed as well: no key of one namespace is ever the key of another.
//
// The readable parts are slugs for people and lifecycle rules; the hash alone identifies the
// contents, so two branches whose names slug alike never share an object.
//
// A file-level family is every file-level key with the same inputs but the manifest hash: its
// folder <family> is a hash of those inputs, so one prefix (Family) holds one family and the
// newest-match fallback lists it in one call.
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
	// Namespace isolates the keys of untrusted builds: "" is the shared namespace, else the
	// result of BranchNamespace or PullRequestNamespace.
	Namespace string
}

// BranchNamespace is the namespace of the builds of a branch other than the default branch: a
// slug of its name for people, and a hash of the name itself, so that branches whose names slug
// alike never share a namespace.
func BranchNamespace(branch string) string {
	sum := sha256.Sum256([]byte(branch))
	// 64 bits: no branch name can be searched out that takes another branch's namespace.
	return "branch-" + slug(branch) + "-" + hex.EncodeToString(sum[:8])
}

// PullRequestNamespace is the namespace of the builds of pull request number. It never equals a
// BranchNamespace, whatever the pull request's branch is called.
func PullRequestNamespace(number string) string {
	return "pr-" + slug(number)
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

// Key is one object key, the level and the namespace it belongs to.
type Key struct {
	Level     config.Level `json:"level"`
	Name      string       `json:"name"`
	Namespace string       `json:"namespace,omitempty"` // "": the shared namespace
	// Newest marks a family (see Family): Name is a prefix, and the candidate is the most recently
	// saved object below it.
	Newest bool `json:"newest,omitempty"`
}

// Family returns the file-level family of in: the prefix below which every file-level object of
// the same inputs but any manifest lies, as a Key with Newest set.
func Family(prefix string, in Inputs) (Key, error) {
	in.ManifestHash = "-" // any: For needs one, and the family's folder does not depend on it
	k, err := For(config.LevelFile, prefix, in)
	if err != nil {
		return Key{}, err
	}
	k.Name, k.Newest = path.Dir(k.Name)+"/", true
	return k, nil
}

// For returns the object key for level under prefix.
func For(level config.Level, prefix string, in Inputs) (Key, error) {
	var base, folder string
	org, pipe := slug(in.Build.Organization), slug(in.Build.Pipeline)
	ns := in.Build.Namespace
	// top holds the pipeline's level folders; all is the organisation's, unless isolated.
	top, all := path.Join(org, pipe), org
	if ns != "" {
		top = path.Join(org, pipe, "ns", ns) // already slugs and hex: kept whole, hash included
		all = top
	}
	switch level {
	case config.LevelFile:
		if in.ManifestHash == "" {
			return Key{}, fmt.Errorf("file level key: no manifest hash")
		}
		base, folder = in.ManifestHash, path.Join(top, "file")
	case config.LevelStep:
		base, folder = in.Build.Step, path.Join(top, "step", slug(in.Build.Step))
	case config.LevelBranch:
		base, folder = in.Build.Branch, path.Join(top, "branch", slug(in.Build.Branch))
	case config.LevelPipeline:
		folder = path.Join(top, "pipeline")
	case config.LevelAll:
		folder = path.Join(all, "all")
	default:
		return Key{}, fmt.Errorf("key for unknown level %q", level)
	}
	name, err := hashOf(level, base, in)
	if err != nil {
		return Key{}, err
	}
	if level == config.LevelFile {
		// The family: every input but the manifest, so that one folder holds one family.
		family, err := hashOf(level, "", in)
		if err != nil {
			return Key{}, err
		}
		folder = path.Join(folder, family)
	}
	name = path.Join(folder, name) + in.Compression.Extension()
	if prefix != "" {
		name = strings.Trim(prefix, "/") + "/" + name
	}
	return Key{Level: level, Name: name, Namespace: ns}, nil
}

// hashOf hashes every input of a key of level with base (hex, 16 bytes).
func hashOf(level config.Level, base string, in Inputs) (string, error) {
	ns := in.Build.Namespace
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
		Namespace   string   `json:"ns,omitempty"` // omitted when shared: the shared keys are unchanged
	}{FormatVersion, string(level), in.Build.Organization, pipelineOf(level, in.Build.Pipeline, ns), base,
		in.Paths, string(in.Compression), in.OS, in.Arch, in.KeyExtra, ns})
	if err != nil {
		return "", fmt.Errorf("key for level %s: %w", level, err)
	}
	sum := sha256.Sum256(doc)
	return hex.EncodeToString(sum[:16]), nil
}

// pipelineOf keeps the pipeline out of the shared all level's hash: that level is shared by
// every pipeline of the organisation. An isolated namespace is the pipeline's own.
func pipelineOf(level config.Level, pipeline, namespace string) string {
	if level == config.LevelAll && namespace == "" {
		return ""
	}
	return pipeline
}

// Slug is how a name (a branch, a step) appears as a folder of an object name.
func Slug(s string) string { return slug(s) }

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
