package cachekey

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/archive"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
)

func inputs() Inputs {
	return Inputs{
		Build: Build{Organization: "acme", Pipeline: "web", Branch: "feature/x y", Step: ":npm: install"},
		Paths: []string{"node_modules"}, Compression: archive.Zstd, OS: "linux", Arch: "amd64",
		ManifestHash: "abc",
	}
}

func TestLayout(t *testing.T) {
	for level, pattern := range map[config.Level]string{
		config.LevelFile:     `^pre/acme/web/file/[0-9a-f]{32}/[0-9a-f]{32}\.tar\.zst$`,
		config.LevelStep:     `^pre/acme/web/step/npm-install/[0-9a-f]{32}\.tar\.zst$`,
		config.LevelBranch:   `^pre/acme/web/branch/feature-x-y/[0-9a-f]{32}\.tar\.zst$`,
		config.LevelPipeline: `^pre/acme/web/pipeline/[0-9a-f]{32}\.tar\.zst$`,
		config.LevelAll:      `^pre/acme/all/[0-9a-f]{32}\.tar\.zst$`,
	} {
		k, err := For(level, "/pre/", inputs())
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(pattern).MatchString(k.Name) || k.Level != level {
			t.Errorf("%s: %s does not match %s", level, k.Name, pattern)
		}
	}
}

// Every input changes the key; nothing else does.
func TestKeyInputs(t *testing.T) {
	key := func(level config.Level, mod func(*Inputs)) string {
		in := inputs()
		mod(&in)
		k, err := For(level, "", in)
		if err != nil {
			t.Fatal(err)
		}
		return k.Name
	}
	same := func(*Inputs) {}
	if first, again := key(config.LevelFile, same), key(config.LevelFile, same); first != again {
		t.Fatal("keys are not deterministic")
	}
	for name, mod := range map[string]func(*Inputs){
		"manifest":    func(in *Inputs) { in.ManifestHash = "def" },
		"paths":       func(in *Inputs) { in.Paths = []string{"node_modules", "x"} },
		"compression": func(in *Inputs) { in.Compression = archive.Gzip },
		"os":          func(in *Inputs) { in.OS = "darwin" },
		"arch":        func(in *Inputs) { in.Arch = "arm64" },
		"key-extra":   func(in *Inputs) { in.KeyExtra = "node20" },
		"pipeline":    func(in *Inputs) { in.Build.Pipeline = "api" },
	} {
		if key(config.LevelFile, mod) == key(config.LevelFile, same) {
			t.Errorf("file level: %s does not change the key", name)
		}
	}
	branchA := key(config.LevelBranch, func(in *Inputs) { in.Build.Branch = "a/b" })
	branchB := key(config.LevelBranch, func(in *Inputs) { in.Build.Branch = "a-b" })
	if branchA == branchB {
		t.Error("branches that slug alike share a key")
	}
	if key(config.LevelBranch, func(in *Inputs) { in.ManifestHash = "zzz" }) != key(config.LevelBranch, same) {
		t.Error("the manifest changes the branch key")
	}
	if key(config.LevelAll, func(in *Inputs) { in.Build.Pipeline = "api" }) != key(config.LevelAll, same) {
		t.Error("the pipeline changes the all-level key")
	}
}

func TestHashManifest(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("package-lock.json", "v1")
	write("apps/a/yarn.lock", "a")
	write("apps/b/yarn.lock", "b")
	hash := func(patterns ...string) string {
		h, err := HashManifest(t.Context(), patterns, dir, "/home")
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	h1 := hash("package-lock.json", "apps/*/yarn.lock")
	if h1 != hash("apps/*/yarn.lock", "package-lock.json") {
		t.Error("pattern order changes the hash")
	}
	if h1 == hash("package-lock.json") {
		t.Error("glob matches are not hashed")
	}
	if hash("apps") != hash("apps/*/yarn.lock") {
		t.Error("a directory and a glob of the same files hash differently")
	}
	write("apps/b/yarn.lock", "b2")
	if h1 == hash("package-lock.json", "apps/*/yarn.lock") {
		t.Error("content change does not change the hash")
	}
	if _, err := HashManifest(t.Context(), []string{"nothing-*.lock"}, dir, "/home"); err == nil {
		t.Error("a pattern that matches nothing is not an error")
	}
}

// Patterns that match the same files are no error in either order, and hash those files once.
func TestHashManifestOverlappingPatterns(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"package-lock.json", "package.json", "apps/a/yarn.lock"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	hash := func(patterns ...string) string {
		h, err := HashManifest(t.Context(), patterns, dir, "/home")
		if err != nil {
			t.Fatalf("%q: %v", patterns, err)
		}
		return h
	}
	want := hash("*.json")
	for _, patterns := range [][]string{
		{"*.json", "package-lock.json"},
		{"package-lock.json", "*.json"},
		{"package.json", "*.json", "package-lock.json", "package.json"},
		{"./*.json", dir + "/package-lock.json"},
	} {
		if got := hash(patterns...); got != want {
			t.Errorf("%q hashes to %s, want %s (that of *.json)", patterns, got, want)
		}
	}
	if hash("apps", "apps/a/yarn.lock") != hash("apps/a/yarn.lock", "apps") {
		t.Error("a directory and a file in it hash differently by order")
	}
	_, err := HashManifest(t.Context(), []string{"*.json", "nothing.lock"}, dir, "/home")
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Key != "manifest" || !strings.Contains(err.Error(), `"nothing.lock" matches no file`) {
		t.Errorf("a pattern that matches nothing beside one that does: %v, want a manifest error naming it", err)
	}
}

// An isolated namespace has folders of its own and keys no other namespace has; the shared
// namespace's keys are those of before namespaces existed.
func TestNamespaces(t *testing.T) {
	key := func(level config.Level, ns string) string {
		in := inputs()
		in.Build.Namespace = ns
		k, err := For(level, "pre", in)
		if err != nil {
			t.Fatal(err)
		}
		if k.Namespace != ns {
			t.Errorf("%s: key namespace %q, want %q", level, k.Namespace, ns)
		}
		return k.Name
	}
	branch := BranchNamespace("feature/x y")
	if !regexp.MustCompile(`^branch-feature-x-y-[0-9a-f]{16}$`).MatchString(branch) {
		t.Errorf("branch namespace %q", branch)
	}
	for level, pattern := range map[config.Level]string{
		config.LevelFile: `^pre/acme/web/ns/pr-42/file/[0-9a-f]{32}/[0-9a-f]{32}\.tar\.zst$`,
		config.LevelStep: `^pre/acme/web/ns/pr-42/step/npm-install/[0-9a-f]{32}\.tar\.zst$`,
		config.LevelAll:  `^pre/acme/web/ns/pr-42/all/[0-9a-f]{32}\.tar\.zst$`,
	} {
		if k := key(level, PullRequestNamespace("42")); !regexp.MustCompile(pattern).MatchString(k) {
			t.Errorf("%s: %s does not match %s", level, k, pattern)
		}
	}
	for _, level := range config.Levels {
		names := map[string]string{}
		// A pull request whose branch is called main, the branch main, branches that slug alike.
		for _, ns := range []string{"", PullRequestNamespace("7"), BranchNamespace("main"), BranchNamespace("a/b"),
			BranchNamespace("a-b"), BranchNamespace("pr-7")} {
			k := key(level, ns)
			if other, dup := names[k]; dup {
				t.Errorf("%s: namespaces %q and %q share key %s", level, other, ns, k)
			}
			names[k] = ns
		}
	}
	// The all level of a namespace is the pipeline's own; the shared one is the organisation's.
	in := inputs()
	in.Build.Namespace = branch
	api := in
	api.Build.Pipeline = "api"
	a, _ := For(config.LevelAll, "", in)
	b, _ := For(config.LevelAll, "", api)
	if a.Name == b.Name {
		t.Error("two pipelines share an isolated all-level key")
	}
}

// The shared namespace's keys did not change when namespaces came: existing caches keep hitting.
func TestSharedKeysUnchanged(t *testing.T) {
	k, err := For(config.LevelPipeline, "", inputs())
	if err != nil {
		t.Fatal(err)
	}
	if want := "acme/web/pipeline/" + sharedPipelineHash + ".tar.zst"; k.Name != want {
		t.Errorf("pipeline key %s, want %s (as before namespaces)", k.Name, want)
	}
}

// sharedPipelineHash is the pipeline-level key of inputs() as computed before namespaces existed.
const sharedPipelineHash = "f5b329477cb1e20b1d1856353aa5f0e7"

// A family's folder holds the file-level keys of every manifest, and only of its inputs.
func TestFamily(t *testing.T) {
	fam, err := Family("pre", inputs())
	if err != nil {
		t.Fatal(err)
	}
	if !fam.Newest || fam.Level != config.LevelFile || !regexp.MustCompile(`^pre/acme/web/file/[0-9a-f]{32}/$`).MatchString(fam.Name) {
		t.Fatalf("family %+v", fam)
	}
	for _, manifest := range []string{"abc", "def"} {
		in := inputs()
		in.ManifestHash = manifest
		k, _ := For(config.LevelFile, "pre", in)
		if !strings.HasPrefix(k.Name, fam.Name) || strings.Contains(strings.TrimPrefix(k.Name, fam.Name), "/") {
			t.Errorf("manifest %s: key %s is not in family %s", manifest, k.Name, fam.Name)
		}
	}
	for name, mod := range map[string]func(*Inputs){
		"paths":       func(in *Inputs) { in.Paths = []string{"vendor"} },
		"compression": func(in *Inputs) { in.Compression = archive.Gzip },
		"platform":    func(in *Inputs) { in.Arch = "arm64" },
		"key-extra":   func(in *Inputs) { in.KeyExtra = "node20" },
		"pipeline":    func(in *Inputs) { in.Build.Pipeline = "api" },
		"namespace":   func(in *Inputs) { in.Build.Namespace = "pr-1" },
	} {
		in := inputs()
		mod(&in)
		other, _ := Family("pre", in)
		if strings.HasPrefix(other.Name, fam.Name) || strings.HasPrefix(fam.Name, other.Name) {
			t.Errorf("%s: families %s and %s overlap", name, other.Name, fam.Name)
		}
	}
}
