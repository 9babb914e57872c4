//go:build unix

package archive

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Read-ahead holds files open for the writer. With few descriptors to spare
// (24: three slots; 15: one slot), it neither starves the writer nor
// deadlocks, leaves what it cannot open to the writer, and the archive is
// what a serial walk writes. The limit is the process's, so a child process
// (this test binary again) writes the archive under it.
func TestReadAheadWithFewDescriptors(t *testing.T) {
	if limit := os.Getenv("S3CACHE_TEST_FEW_FDS"); limit != "" {
		n, err := strconv.ParseUint(limit, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		lim := syscall.Rlimit{Cur: n, Max: n}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
		if got, want := openAheadLimit(), int(n/8); got != want {
			t.Fatalf("openAheadLimit %d, want %d", got, want)
		}
		var buf bytes.Buffer
		if _, err := write(context.Background(), &buf, []string{os.Getenv("S3CACHE_TEST_FEW_FDS_SRC")}, None, 0, nil, nil, true); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(os.Getenv("S3CACHE_TEST_FEW_FDS_OUT"), buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		return
	}
	src := manySmallFiles(t)
	var serial bytes.Buffer
	if _, err := write(context.Background(), &serial, []string{src}, None, 0, nil, nil, false); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []string{"24", "15"} {
		out := filepath.Join(tempDir(t), "archive")
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestReadAheadWithFewDescriptors$", "-test.count=1")
		cmd.Env = append(os.Environ(), "S3CACHE_TEST_FEW_FDS="+limit, "S3CACHE_TEST_FEW_FDS_SRC="+src, "S3CACHE_TEST_FEW_FDS_OUT="+out)
		if log, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("archive with %s descriptors: %v\n%s", limit, err, log)
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, serial.Bytes()) {
			t.Fatalf("%s descriptors: the archive (%d bytes) differs from the one written serially (%d)", limit, len(got), serial.Len())
		}
	}
}

// manySmallFiles makes a tree of 300 small files in 3 directories.
func manySmallFiles(t *testing.T) string {
	src := filepath.Join(tempDir(t), "src")
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	for i := range 300 {
		writeFile(t, filepath.Join(src, strconv.Itoa(i%3), strconv.Itoa(i)), string(testInput(i*13, uint64(i))), 0o644, mtime)
	}
	return src
}
