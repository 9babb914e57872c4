package config_test

import (
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// A pipeline references the plugin by a location and a ref, location#ref. These tests hold every
// reference the README shows to the repository this module is published from (go.mod), so that
// an example never sends users to another project's plugin.

// pluginRepository returns the repository a plugin reference names, by Buildkite's rules:
// "name#ref" is github.com/buildkite-plugins/name-buildkite-plugin, "org/name#ref" is
// github.com/org/name-buildkite-plugin, and a URL or a path starting with a host names its
// repository as given (scheme, user, ".git" and a subdirectory aside).
func pluginRepository(ref string) (string, error) {
	loc, _, _ := strings.Cut(ref, "#")
	switch {
	case strings.Contains(loc, "://"):
		u, err := url.Parse(loc)
		if err != nil {
			return "", fmt.Errorf("plugin reference %q: %w", ref, err)
		}
		loc = u.Host + u.Path
	case strings.HasPrefix(loc, "git@"): // git@host:org/repo
		loc = strings.Replace(strings.TrimPrefix(loc, "git@"), ":", "/", 1)
	}
	parts := strings.Split(strings.Trim(loc, "/"), "/")
	for i, p := range parts {
		parts[i] = strings.TrimSuffix(p, ".git")
	}
	switch {
	case slices.Contains(parts, ""):
		return "", fmt.Errorf("plugin reference %q: empty location", ref)
	case strings.Contains(parts[0], "."): // a host: github.com/org/repo[/subdirectory]
		if len(parts) < 3 {
			return "", fmt.Errorf("plugin reference %q: want host/org/repository", ref)
		}
		return strings.Join(parts[:3], "/"), nil
	case len(parts) == 1:
		return "github.com/buildkite-plugins/" + parts[0] + "-buildkite-plugin", nil
	case len(parts) == 2:
		return "github.com/" + parts[0] + "/" + parts[1] + "-buildkite-plugin", nil
	}
	return "", fmt.Errorf("plugin reference %q: not a Buildkite plugin location", ref)
}

func TestPluginRepository(t *testing.T) {
	for _, tc := range []struct{ ref, want string }{
		{"s3-cache#v1.0.0", "github.com/buildkite-plugins/s3-cache-buildkite-plugin"},
		{"s3-cache/s3-cache#v1.0.0", "github.com/s3-cache/s3-cache-buildkite-plugin"},
		{"docker-compose#v5.0.0", "github.com/buildkite-plugins/docker-compose-buildkite-plugin"},
		{"github.com/s3-cache/s3-cache-buildkite-plugin#v1.0.0", "github.com/s3-cache/s3-cache-buildkite-plugin"},
		{"https://github.com/s3-cache/s3-cache-buildkite-plugin.git#v1.0.0", "github.com/s3-cache/s3-cache-buildkite-plugin"},
		{"ssh://git@github.com/s3-cache/s3-cache-buildkite-plugin.git#main", "github.com/s3-cache/s3-cache-buildkite-plugin"},
		{"git@github.com:s3-cache/s3-cache-buildkite-plugin.git#v1", "github.com/s3-cache/s3-cache-buildkite-plugin"},
		{"github.com/acme/plugins/s3-cache#v1", "github.com/acme/plugins"},
		{"", ""},
		{"a/b/c#v1", ""},
		{"github.com/acme#v1", ""},
	} {
		got, err := pluginRepository(tc.ref)
		if tc.want == "" {
			if err == nil {
				t.Errorf("pluginRepository(%q) = %q, want an error", tc.ref, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("pluginRepository(%q) = %q, %v; want %q", tc.ref, got, err, tc.want)
		}
	}
}

// moduleRepository returns the repository of this module, from go.mod: github.com/<org>/<repo>.
func moduleRepository(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(doc), "\n") {
		if path, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			parts := strings.Split(strings.TrimSpace(path), "/")
			if len(parts) < 3 {
				t.Fatalf("go.mod: module path %q names no repository", path)
			}
			return strings.Join(parts[:3], "/")
		}
	}
	t.Fatal("go.mod has no module line")
	return ""
}

// checkReference fails t unless the plugin reference ref names this module's repository.
func checkReference(t *testing.T, where, ref, repo string) {
	t.Helper()
	got, err := pluginRepository(ref)
	if err != nil {
		t.Errorf("%s: %v", where, err)
		return
	}
	if !strings.EqualFold(got, repo) {
		want := strings.TrimSuffix(strings.TrimPrefix(repo, "github.com/"), "-buildkite-plugin")
		t.Errorf("%s: plugin reference %q is %s, not this plugin (%s, go.mod): write %s#<version>", where, ref, got, repo, want)
	}
}

// referenceInProse matches a plugin reference in a code span of prose: `org/name#v1.2.3`.
var referenceInProse = regexp.MustCompile("`([A-Za-z0-9][A-Za-z0-9_.:/@-]*#v[^`\\s]*)`")

// TestReferencesInProseResolve checks the references in the text of the README and the design
// (the README's examples are TestReadmeExamplesValidate's).
func TestReferencesInProseResolve(t *testing.T) {
	repo := moduleRepository(t)
	found := 0
	for _, name := range []string{"README.md", "docs/design.md"} {
		doc, err := os.ReadFile("../../" + name)
		if err != nil {
			t.Fatal(err)
		}
		text := yamlBlock.ReplaceAllString(string(doc), "")
		for _, m := range referenceInProse.FindAllStringSubmatch(text, -1) {
			found++
			checkReference(t, name, m[1], repo)
		}
	}
	if found == 0 {
		t.Fatal("found no plugin reference in the text of README.md and docs/design.md")
	}
}
