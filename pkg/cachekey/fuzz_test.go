package cachekey

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/fspath"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
)

// FuzzManifestPatterns hashes a small checkout and home with arbitrary patterns, one a line
// (blank ones dropped, as config does). Inputs whose patterns reach outside the checkout and
// home as written are skipped: absolute patterns are allowed, and would read the machine.
// HashManifest must not panic, must read only files below the checkout or home (also after
// following symlinks), must fail only with a manifest *config.Error, and must give one hash
// whatever the patterns' order or repetition.
func FuzzManifestPatterns(f *testing.F) {
	tmp := f.TempDir()
	dir, home := filepath.Join(tmp, "co"), filepath.Join(tmp, "home")
	for name, content := range map[string]string{
		"co/package-lock.json": "{}", "co/package.json": "{}", "co/apps/a/yarn.lock": "a", "co/apps/b/yarn.lock": "b",
		"co/go.sum": "sum", "co/deep/er/x.lock": "x", "co/~x": "tilde", "co/[odd].lock": "odd", "co/sp ace.lock": "s",
		"home/.npmrc": "npm", "home/.cache/k": "k", "outside/secret": "secret",
	} {
		p := filepath.Join(tmp, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			f.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			f.Fatal(err)
		}
	}
	for link, target := range map[string]string{"co/link": "apps", "co/dangling": "nowhere", "co/loop": "loop"} {
		if err := os.Symlink(target, filepath.Join(tmp, link)); err != nil {
			f.Fatal(err)
		}
	}
	for _, seed := range []string{
		"package-lock.json", "*.json\npackage-lock.json", "package-lock.json\n*.json", "apps/*/yarn.lock",
		"apps\napps/a/yarn.lock", "~/.npmrc", "~", ".", "link/*", "dangling", "nothing-*.lock", "[", "~root/x",
		"./~x", "[[]odd].lock", "deep/**/x.lock", dir + "/go.sum", "../co/go.sum", "../outside/secret",
	} {
		f.Add(seed)
	}
	hexHash := regexp.MustCompile(`^[0-9a-f]{64}$`)
	f.Fuzz(func(t *testing.T, input string) {
		var patterns []string
		for p := range strings.SplitSeq(input, "\n") {
			if strings.TrimSpace(p) == "" {
				continue
			}
			if abs, err := config.ResolvePath("manifest", p, dir, home); err == nil && !fspath.Within(dir, abs) && !fspath.Within(home, abs) {
				t.Skip("reaches outside the checkout and home")
			}
			patterns = append(patterns, p)
		}
		if len(patterns) == 0 || len(patterns) > 8 {
			t.Skip()
		}

		files, ferr := manifestFiles(patterns, dir, home)
		for _, p := range files {
			real, rerr := filepath.EvalSymlinks(p)
			if !fspath.Within(dir, p) && !fspath.Within(home, p) || rerr == nil && !fspath.Within(dir, real) && !fspath.Within(home, real) {
				t.Fatalf("%q read %s (%s), outside the checkout and home", patterns, p, real)
			}
		}
		h, err := HashManifest(t.Context(), patterns, dir, home)
		if (ferr == nil) != (err == nil) {
			t.Fatalf("%q: manifestFiles says %v, HashManifest %v", patterns, ferr, err)
		}
		if err != nil {
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Key != "manifest" {
				t.Fatalf("%q: %v (%T), want a manifest configuration error", patterns, err, err)
			}
		} else if !hexHash.MatchString(h) {
			t.Fatalf("%q: hash %q", patterns, h)
		}

		reversed := slices.Clone(patterns)
		slices.Reverse(reversed)
		for what, other := range map[string][]string{"again": patterns, "reversed": reversed, "repeated": slices.Concat(patterns, patterns)} {
			h2, err2 := HashManifest(t.Context(), other, dir, home)
			if h2 != h || (err2 == nil) != (err == nil) {
				t.Fatalf("%q %s: %q, %v; first %q, %v", patterns, what, h2, err2, h, err)
			}
		}
	})
}
