package archive

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestReadAheadSameBytes: the archive is byte for byte the same whether the
// files are opened ahead by workers or by the tar writer itself, and whether
// their contents are read straight into zstd frames or copied through the
// writer's buffer (gzip, none),
// for a tree with small and large files, hard links, symlinks, empty files
// and directories.
func TestReadAheadSameBytes(t *testing.T) {
	src := filepath.Join(tempDir(t), "src")
	makeSampleTree(t, src)
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	for i := range 400 {
		writeFile(t, filepath.Join(src, "many", strconv.Itoa(i%7), strconv.Itoa(i)), string(testInput(i*97, uint64(i))), 0o640, mtime)
	}
	writeFile(t, filepath.Join(src, "large"), string(testInput(readAheadMaxFile+1, 1)), 0o644, mtime)
	writeFile(t, filepath.Join(src, "limit"), string(testInput(readAheadMaxFile, 2)), 0o644, mtime)
	writeFile(t, filepath.Join(src, "emptyfile"), "", 0o600, mtime)
	if err := os.Link(filepath.Join(src, "many", "3", "10"), filepath.Join(src, "many", "hardlink")); err != nil {
		t.Fatal(err)
	}
	mustSymlink(t, "many/3", filepath.Join(src, "manylink"))

	sources := []string{src, filepath.Join(src, "large")}
	// archive returns the tar stream of the sources, decompressed.
	archive := func(c Compression, readAhead bool) []byte {
		var buf bytes.Buffer
		if _, err := write(context.Background(), &buf, sources, c, 0, nil, nil, readAhead); err != nil {
			t.Fatalf("%s, read-ahead %t: %v", c, readAhead, err)
		}
		r, closeR, err := newDecompressor(&buf, c)
		if err != nil {
			t.Fatal(err)
		}
		defer closeR()
		raw, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("%s, read-ahead %t: decompress: %v", c, readAhead, err)
		}
		return raw
	}
	serial := archive(None, false)
	for _, c := range []Compression{None, Gzip, Zstd} {
		for _, readAhead := range []bool{false, true} {
			if got := archive(c, readAhead); !bytes.Equal(got, serial) {
				t.Errorf("%s, read-ahead %t: archive differs from the one written serially without compression (%d bytes, want %d)",
					c, readAhead, len(got), len(serial))
			}
		}
	}
	target := filepath.Join(tempDir(t), "target")
	if _, err := Extract(context.Background(), bytes.NewReader(serial), []string{target, target + "-large"}, None, nil); err != nil {
		t.Fatal(err)
	}
	assertSameTree(t, src, target)
}
