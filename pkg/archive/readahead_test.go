package archive

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestReadAheadSameBytes: the archive is byte for byte the same whether files
// are read ahead by workers, partly (a budget that runs out), or all by the
// tar writer itself, for a tree with small and large files, hard links,
// symlinks, empty files and directories.
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

	archive := func(budget int64) []byte {
		var buf bytes.Buffer
		if _, err := write(context.Background(), &buf, []string{src, filepath.Join(src, "large")}, None, 0, nil, budget); err != nil {
			t.Fatalf("budget %d: %v", budget, err)
		}
		return buf.Bytes()
	}
	serial := archive(0)
	for _, budget := range []int64{50_000, readAheadMaxFile, readAheadBudget} {
		if got := archive(budget); !bytes.Equal(got, serial) {
			t.Errorf("budget %d: archive differs from the one written without read-ahead (%d bytes, want %d)", budget, len(got), len(serial))
		}
	}
	target := filepath.Join(tempDir(t), "target")
	if _, err := Extract(context.Background(), bytes.NewReader(serial), []string{target, target + "-large"}, None, nil); err != nil {
		t.Fatal(err)
	}
	assertSameTree(t, src, target)
}
