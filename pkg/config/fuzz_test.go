package config

import (
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/archive"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/s3"
)

// FuzzLoad decodes arbitrary environments. The input is lines NAME=value; the plugin's prefix is
// put before NAME unless NAME starts with "!", which sets the bare name. LoadEnv must not panic,
// must return either a Config that holds the invariants below or a one-line *Error, must give the
// same answer twice, and must not change its answer for bare names or for a list key's scalar
// form when the list form is set.
func FuzzLoad(f *testing.F) {
	f.Add(encodeEnv(base()))
	for _, tc := range loadErrorCases() {
		f.Add(encodeEnv(tc.env))
	}
	for _, tc := range listCases() {
		f.Add(encodeEnv(tc.env))
	}
	f.Add(encodeEnv(with(base(), "PART_SIZE", "NaN", "STALL_TIMEOUT", "1e300")))
	f.Add(encodeEnv(base()) + "!FORCE=yes\n!BUCKET=evil\n!PATHS_0=/\n")
	f.Fuzz(func(t *testing.T, input string) {
		environ := decodeEnv(input)
		c, err := LoadEnv(environ)
		checkLoaded(t, c, err)

		c2, err2 := LoadEnv(environ)
		sameLoad(t, "loaded again", c, err, c2, err2)

		hostile := slices.Clone(environ)
		for k, v := range hostileBare() {
			hostile = append(hostile, k+"="+v)
		}
		c2, err2 = LoadEnv(hostile)
		sameLoad(t, "with bare names set", c, err, c2, err2)

		// A list form, when set, hides the scalar forms (and PATHS_n hides PATH_n too).
		for _, list := range []string{"SAVE", "MANIFEST", "PATH", "PATHS"} {
			if !slices.ContainsFunc(environ, func(kv string) bool { return strings.HasPrefix(kv, Prefix+list+"_0=") }) {
				continue
			}
			without := slices.DeleteFunc(slices.Clone(environ), func(kv string) bool {
				name, _, _ := strings.Cut(kv, "=")
				return hides(list, strings.TrimPrefix(name, Prefix))
			})
			c2, err2 = LoadEnv(without)
			sameLoad(t, "without the forms "+list+"_0 hides", c, err, c2, err2)
		}
	})
}

// hides reports whether the list form of key, when set, hides the form name of the same key.
func hides(key, name string) bool {
	switch key {
	case "PATH":
		return name == "PATH" || name == "PATHS"
	case "PATHS":
		m := indexed.FindStringSubmatch(name)
		return name == "PATH" || name == "PATHS" || m != nil && m[1] == "PATH"
	}
	return name == key
}

// encodeEnv writes env (names without the prefix) as FuzzLoad's input.
func encodeEnv(env map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(env)) {
		b.WriteString(k + "=" + env[k] + "\n")
	}
	return b.String()
}

func decodeEnv(input string) []string {
	var environ []string
	for line := range strings.SplitSeq(input, "\n") {
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if bare, ok := strings.CutPrefix(name, "!"); ok {
			name = bare
		} else {
			name = Prefix + name
		}
		environ = append(environ, name+"="+value)
	}
	return environ
}

func checkLoaded(t *testing.T, c *Config, err error) {
	t.Helper()
	if err != nil {
		var ce *Error
		if !errors.As(err, &ce) || c != nil {
			t.Fatalf("LoadEnv = %v, %v (%T); want a *config.Error and no Config", c, err, err)
		}
		if strings.ContainsAny(err.Error(), "\n\r") {
			t.Fatalf("error %q is not one line", err)
		}
		return
	}
	if verr := c.validate(); verr != nil {
		t.Fatalf("LoadEnv returned a Config that does not validate: %v", verr)
	}
	if len(c.Paths) == 0 || slices.ContainsFunc(c.Paths, func(p string) bool { return strings.TrimSpace(p) == "" }) {
		t.Fatalf("paths %q", c.Paths)
	}
	if c.Restore != "" && !slices.Contains(Levels, c.Restore) {
		t.Fatalf("restore %q", c.Restore)
	}
	for i, l := range c.Save {
		if !slices.Contains(Levels, l) || slices.Contains(c.Save[:i], l) {
			t.Fatalf("save %q", c.Save)
		}
	}
	if !slices.Contains([]When{WhenOnSuccess, WhenOnFailure, WhenAlways}, c.When) ||
		!slices.Contains([]s3.Conditional{s3.ConditionalAuto, s3.ConditionalOn, s3.ConditionalOff}, c.Store.ConditionalWrites) ||
		!slices.Contains([]archive.Compression{archive.Zstd, archive.Gzip, archive.None}, c.Cache.Compression) {
		t.Fatalf("enum out of range: %+v", c)
	}
	if c.Store.Bucket == "" || c.Store.Bucket != strings.TrimSpace(c.Store.Bucket) || strings.HasPrefix(c.Prefix, "/") || strings.HasSuffix(c.Prefix, "/") {
		t.Fatalf("bucket %q prefix %q", c.Store.Bucket, c.Prefix)
	}
	if want := probePrefix(c.Prefix); c.Store.ProbePrefix != want {
		t.Fatalf("probe prefix %q, want %q", c.Store.ProbePrefix, want)
	}
}

func sameLoad(t *testing.T, what string, c1 *Config, err1 error, c2 *Config, err2 error) {
	t.Helper()
	if (err1 == nil) != (err2 == nil) || err1 != nil && err1.Error() != err2.Error() || !reflect.DeepEqual(c1, c2) {
		t.Fatalf("%s: got %+v, %v; first %+v, %v", what, c2, err2, c1, err1)
	}
}
