package cache_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/s3test"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cache"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cachekey"
)

// Every key a save stores restores: a tree whose file names are legal on Linux but odd (not
// UTF-8, a backslash, a newline, 255 bytes, a long path) is saved and restored exactly, with no
// warning.
func TestOddNamesSaveAndRestore(t *testing.T) {
	names := []string{
		"caf\xe9.txt", "\xff dir/inner", `a\b`, `..\..\x`, "new\nline",
		strings.Repeat("n", 255),
		strings.Repeat("d", 200) + "/" + strings.Repeat("e", 250) + "/f",
	}
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		src := filepath.Join(t.TempDir(), "c")
		makeTree(t, src, 10)
		for _, name := range names {
			must(t, os.MkdirAll(filepath.Dir(filepath.Join(src, name)), 0o755))
			must(t, os.WriteFile(filepath.Join(src, name), []byte(name), 0o644))
		}
		saver, _, saveLog := newCache(t, srv, []string{src}, 2)
		k := key("odd-names/key.tar.zst")
		saved, err := saveOne(t, saver, k)
		must(t, err)
		if !saved.Stored {
			t.Fatalf("not stored: %+v", saved)
		}

		dst := filepath.Join(t.TempDir(), "c")
		restorer, _, restoreLog := newCache(t, srv, []string{dst}, 2)
		got, err := restorer.Restore(t.Context(), []cachekey.Key{k})
		if err != nil || got.Hit != cache.Exact {
			t.Fatalf("restore = %+v, %v; want an exact hit\n%s", got, err, restoreLog)
		}
		if a, b := listing(t, src), listing(t, dst); a != b {
			t.Fatalf("restored tree differs:\n%q\nwant:\n%q", b, a)
		}
		for _, log := range []string{saveLog.String(), restoreLog.String()} {
			if strings.Contains(log, ":warning:") {
				t.Errorf("unexpected warning:\n%s", log)
			}
		}
	})
}
