package inventory

import (
	"strings"
	"testing"
	"time"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/archive"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cachekey"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
)

// Every name cachekey.For makes parses back into what went into it.
func TestParseReadsEveryKeyCachekeyMakes(t *testing.T) {
	for _, prefix := range []string{"", "cache", "a/b"} {
		for _, ns := range []string{"", cachekey.PullRequestNamespace("7"), cachekey.BranchNamespace("feature/x")} {
			for _, level := range []config.Level{config.LevelFile, config.LevelStep, config.LevelBranch, config.LevelPipeline, config.LevelAll} {
				in := cachekey.Inputs{Build: cachekey.Build{Organization: "acme", Pipeline: "all", Branch: "feature/x y",
					Step: ":go: test", Namespace: ns}, Paths: []string{"node_modules"}, Compression: archive.Zstd,
					OS: "linux", Arch: "amd64", ManifestHash: strings.Repeat("ab", 32)}
				k, err := cachekey.For(level, prefix, in)
				if err != nil {
					t.Fatal(err)
				}
				got := Parse(prefix, k.Name)
				want := Cache{Key: k.Name, Org: "acme", Pipeline: "all", Level: string(level), Namespace: ns}
				switch level {
				case config.LevelAll:
					if ns == "" {
						want.Pipeline = "" // the organisation's, shared by every pipeline
					}
				case config.LevelStep:
					want.Step = cachekey.Slug(in.Build.Step)
				case config.LevelBranch:
					want.Branch = cachekey.Slug(in.Build.Branch)
				case config.LevelFile:
					fam, err := cachekey.Family(prefix, in)
					if err != nil {
						t.Fatal(err)
					}
					want.Family = fam.Name[strings.LastIndex(strings.TrimSuffix(fam.Name, "/"), "/")+1 : len(fam.Name)-1]
				}
				if got.Key != want.Key || got.Org != want.Org || got.Pipeline != want.Pipeline || got.Level != want.Level ||
					got.Step != want.Step || got.Branch != want.Branch || got.Family != want.Family || got.Namespace != want.Namespace {
					t.Errorf("Parse(%q, %q) = %+v, want %+v", prefix, k.Name, got, want)
				}
			}
		}
	}
}

// Names of any other shape are unknown, never guessed.
func TestParseUnknown(t *testing.T) {
	h := strings.Repeat("0f", 16)
	for _, key := range []string{
		"cache/acme/README.md",
		"cache/acme/web/pipeline/" + h + ".zip",
		"cache/acme/web/pipeline/" + h[:30] + ".tar",
		"cache/acme/web/pipeline/" + strings.ToUpper(h) + ".tar",
		"cache/acme/web/all/" + h + ".tar",            // all below a pipeline only in a namespace
		"cache/acme/web/step/" + h + ".tar",           // step without its folder
		"cache/acme/web/file/fam/extra/" + h + ".tar", // deeper than a family
		"cache/acme/web/ns/pr-1/" + h + ".tar",
		"cache/acme//pipeline/" + h + ".tar",
		"cache/acme/",
		"other/acme/web/pipeline/" + h + ".tar",
		"cache/" + h + ".tar",
	} {
		if c := Parse("cache", key); c.Level != Unknown || c.Org != "" {
			t.Errorf("Parse(%q) = %+v, want unknown", key, c)
		}
	}
}

func TestParseAge(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"7d", 7 * 24 * time.Hour, true}, {"1.5d", 36 * time.Hour, true}, {"36h", 36 * time.Hour, true},
		{"90m", 90 * time.Minute, true}, {"0", 0, true}, {" 2d ", 48 * time.Hour, true},
		{"d", 0, false}, {"-1d", 0, false}, {"-1h", 0, false}, {"nand", 0, false}, {"infd", 0, false},
		{"7 days", 0, false}, {"1w", 0, false}, {"", 0, false},
	} {
		got, err := ParseAge(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseAge(%q) = %v, %v; want %v (ok %t)", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "7d") {
			t.Errorf("ParseAge(%q): error %q does not say what is allowed", tc.in, err)
		}
	}
	if Age(7*24*time.Hour) != "7d" || Age(36*time.Hour) != "36h0m0s" {
		t.Errorf("Age: %s, %s", Age(7*24*time.Hour), Age(36*time.Hour))
	}
}

func TestFilter(t *testing.T) {
	feature := Cache{Org: "acme", Pipeline: "web", Level: "branch", Branch: "feature-x"}
	isolated := Cache{Org: "acme", Pipeline: "web", Level: "file", Namespace: cachekey.BranchNamespace("feature/x")}
	shared := Cache{Org: "acme", Level: "all"}
	unknown := Cache{Level: Unknown}
	for _, tc := range []struct {
		f    Filter
		want []bool // feature, isolated, shared, unknown
	}{
		{Filter{}, []bool{true, true, true, true}},
		{Filter{Org: "acme"}, []bool{true, true, true, false}},
		{Filter{Org: "other"}, []bool{false, false, false, false}},
		{Filter{Pipeline: "web"}, []bool{true, true, false, false}},
		{Filter{Level: "branch"}, []bool{true, false, false, false}},
		{Filter{Level: Unknown}, []bool{false, false, false, true}},
		{Filter{Branch: "feature/x"}, []bool{true, true, false, false}},
		{Filter{Branch: "feature-x"}, []bool{true, false, false, false}}, // the slug: the namespace hashes the name
		{Filter{Branch: "main"}, []bool{false, false, false, false}},
		{Filter{Branch: "feature/x", Level: "file"}, []bool{false, true, false, false}},
	} {
		for i, c := range []Cache{feature, isolated, shared, unknown} {
			if got := tc.f.Match(c); got != tc.want[i] {
				t.Errorf("%+v matches %+v: %t, want %t", tc.f, c, got, tc.want[i])
			}
		}
	}
}
