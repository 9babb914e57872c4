package config_test

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
)

// plugin.yml is the plugin's contract with Buildkite: these tests hold it to the plugin linter's
// rules, to the README's examples, and to what pkg/config accepts.

type pluginYAML struct {
	Name          string         `yaml:"name"`
	Description   string         `yaml:"description"`
	Author        string         `yaml:"author"`
	Requirements  []string       `yaml:"requirements"`
	Configuration map[string]any `yaml:"configuration"`
}

func loadPlugin(t *testing.T) (pluginYAML, *jsonschema.Schema) {
	t.Helper()
	doc, err := os.ReadFile("../../plugin.yml")
	if err != nil {
		t.Fatal(err)
	}
	var p pluginYAML
	if err := yaml.Unmarshal(doc, &p); err != nil {
		t.Fatalf("plugin.yml: %v", err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("plugin-configuration.json", jsonValue(p.Configuration)); err != nil {
		t.Fatal(err)
	}
	schema, err := c.Compile("plugin-configuration.json")
	if err != nil {
		t.Fatalf("plugin.yml's configuration is not a valid JSON schema: %v", err)
	}
	return p, schema
}

// jsonValue turns YAML-decoded values into the types of encoding/json, which the validator expects.
func jsonValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range v {
			out[k] = jsonValue(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = jsonValue(e)
		}
		return out
	case int:
		return float64(v)
	}
	return v
}

func TestPluginYAMLFollowsTheLinterRules(t *testing.T) {
	p, _ := loadPlugin(t)
	if p.Name == "" || p.Description == "" || p.Author == "" || p.Requirements == nil {
		t.Fatalf("plugin.yml needs name, description, author and requirements: %+v", p)
	}
	props, ok := p.Configuration["properties"].(map[string]any)
	if !ok || len(props) == 0 {
		t.Fatal("plugin.yml needs configuration.properties")
	}
	if p.Configuration["additionalProperties"] != false {
		t.Fatal("plugin.yml must set configuration.additionalProperties: false")
	}
	var keys []string
	for k := range props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	want := slices.Clone(config.Keys)
	sort.Strings(want)
	if !slices.Equal(keys, want) {
		t.Fatalf("plugin.yml describes %v\npkg/config accepts %v", keys, want)
	}
}

// toEnv turns a plugin configuration into the variables buildkite-agent gives the hooks.
func toEnv(prefix string, v any, env map[string]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			toEnv(prefix+"_"+strings.ToUpper(strings.ReplaceAll(k, "-", "_")), e, env)
		}
	case []any:
		for i, e := range v {
			toEnv(prefix+"_"+strconv.Itoa(i), e, env)
		}
	default:
		env[prefix] = fmt.Sprint(v)
	}
}

// loadWith runs config.Load on the environment a pipeline's configuration produces, with an
// agent-level bucket.
func loadWith(t *testing.T, conf map[string]any) error {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, config.Prefix) {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	env := map[string]string{}
	toEnv(strings.TrimSuffix(config.Prefix, "_"), conf, env)
	if _, ok := env[config.Prefix+"BUCKET"]; !ok {
		env[config.Prefix+"BUCKET"] = "agent-default-bucket"
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	_, err := config.Load()
	return err
}

func TestSchemaAndConfigAgree(t *testing.T) {
	_, schema := loadPlugin(t)
	for _, tc := range []struct {
		yaml  string
		valid bool
	}{
		{`{path: node_modules, restore: pipeline, save: pipeline}`, true},
		{`{paths: [a, b], manifest: package-lock.json, restore: file, save: [file, branch]}`, true},
		{`{path: x, manifest: [a.lock, "b/*.lock"], restore: all, save: file, force: true, when: always}`, true},
		{`{path: x, save: step, compression: tgz, compression-level: 9, soft-fail: false, download-retries: 5}`, true},
		{`{path: x, restore: branch, bucket: b, prefix: p, region: eu-west-1, endpoint: "http://127.0.0.1:9000", force-path-style: true}`, true},
		{`{path: x, restore: branch, conditional-writes: "off", concurrency: 4, part-size: 64MiB, max-size: 5GiB, stall-timeout: 30}`, true},
		{`{path: x, restore: branch, backend: s3, compression: tar, storage-class: STANDARD_IA, sse: aws:kms, sse-kms-key-id: k}`, true},
		{`{path: x, restore: branch, key-extra: node20, retries: 5, profile: ci, only-show-errors: true, compression: none}`, true},
		{`{path: x, restore: step, annotate: true}`, true},
		{`{restore: pipeline}`, false},                                 // no path
		{`{path: x}`, false},                                           // neither restore nor save
		{`{path: x, restore: everything}`, false},                      // bad level
		{`{path: x, save: [file, nope], manifest: m}`, false},          // bad level in a list
		{`{path: x, restore: file}`, false},                            // file level without manifest
		{`{path: x, save: [branch, file]}`, false},                     // file level without manifest
		{`{path: x, restore: step, restore-keys: [a]}`, false},         // unknown key
		{`{path: x, restore: step, force: yes-please}`, false},         // not a boolean
		{`{path: x, restore: step, compression: zip}`, false},          // unsupported
		{`{path: x, restore: step, when: sometimes}`, false},           // bad enum
		{`{path: x, restore: step, conditional-writes: maybe}`, false}, // bad enum
		{`{path: x, restore: step, download-retries: -1}`, false},      // out of range
		{`{path: x, restore: step, concurrency: 1000}`, false},         // out of range
		{`{path: x, restore: step, compression-level: 99}`, false},     // out of range
		{`{path: x, restore: step, backend: fs}`, false},               // another backend
		{`{path: x, restore: step, part-size: lots}`, false},           // not a size
		{`{path: x, restore: step, annotate: often}`, false},           // not a boolean
		// isolation, fork-saves, restore-newest.
		{`{path: x, restore: step, isolation: branch, fork-saves: false, restore-newest: true}`, true},
		{`{path: x, restore: step, isolation: none, fork-saves: true, restore-newest: false}`, true},
		{`{path: x, restore: step, isolation: pipeline}`, false},    // no such model
		{`{path: x, restore: step, fork-saves: sometimes}`, false},  // not a boolean
		{`{path: x, restore: step, restore-newest: latest}`, false}, // not a boolean
		// restore and save false, lookup-only, fail-on-cache-miss.
		{`{path: x, restore: step, save: false}`, true},                                 // read-only
		{`{path: x, restore: false, save: step}`, true},                                 // save-only
		{`{path: x, restore: step, lookup-only: true, fail-on-cache-miss: true}`, true}, // lookup, fail on a miss
		{`{path: x, save: step, lookup-only: false, fail-on-cache-miss: false}`, true},  // both off
		{`{path: x, restore: false, save: false}`, false},                               // nothing to do
		{`{path: x, restore: false}`, false},                                            // nothing to do
		{`{path: x, restore: true, save: step}`, false},                                 // true is no level
		{`{path: x, restore: step, save: [step, false]}`, false},                        // false in a list
		{`{path: x, save: step, lookup-only: true}`, false},                             // nothing to look up
		{`{path: x, restore: false, save: step, fail-on-cache-miss: true}`, false},      // nothing to miss
		{`{path: x, restore: step, lookup-only: sometimes}`, false},                     // not a boolean
	} {
		t.Run(tc.yaml, func(t *testing.T) {
			var conf map[string]any
			if err := yaml.Unmarshal([]byte(tc.yaml), &conf); err != nil {
				t.Fatal(err)
			}
			schemaErr := schema.Validate(jsonValue(conf))
			configErr := loadWith(t, conf)
			if (schemaErr == nil) != tc.valid || (configErr == nil) != tc.valid {
				t.Fatalf("want valid=%v; plugin.yml says %v; pkg/config says %v", tc.valid, schemaErr, configErr)
			}
		})
	}
}

var yamlBlock = regexp.MustCompile("(?s)```ya?ml\n(.*?)```")

// TestReadmeExamplesValidate holds every plugin of the README's examples to plugin.yml and
// pkg/config, and its reference to this module's repository (see reference_test.go).
func TestReadmeExamplesValidate(t *testing.T) {
	_, schema := loadPlugin(t)
	repo := moduleRepository(t)
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	examples := 0
	for _, block := range yamlBlock.FindAllStringSubmatch(string(readme), -1) {
		var doc struct {
			Steps []struct {
				Plugins []map[string]map[string]any `yaml:"plugins"`
			} `yaml:"steps"`
		}
		if err := yaml.Unmarshal([]byte(block[1]), &doc); err != nil {
			t.Fatalf("README example does not parse: %v\n%s", err, block[1])
		}
		for _, step := range doc.Steps {
			for _, plugin := range step.Plugins {
				for name, conf := range plugin {
					checkReference(t, "README example", name, repo)
					examples++
					if err := schema.Validate(jsonValue(conf)); err != nil {
						t.Errorf("README example %v does not validate against plugin.yml: %v", conf, err)
					}
					if err := loadWith(t, conf); err != nil {
						t.Errorf("README example %v is rejected by pkg/config: %v", conf, err)
					}
				}
			}
		}
	}
	if examples < 2 {
		t.Fatalf("found %d plugin examples in the README, want the documented ones", examples)
	}
}
