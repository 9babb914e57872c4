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

// Read-ahead holds files open for the writer. With few descriptors to spare,
// it leaves those it cannot open to the writer, and the archive is what a
// serial walk writes. The limit is the process's, so a child process (this
// test binary again) writes the archive under it.
func TestReadAheadWithFewDescriptors(t *testing.T) {
	if src := os.Getenv("S3CACHE_TEST_FEW_FDS_SRC"); src != "" {
		lim := syscall.Rlimit{Cur: 24, Max: 24}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := write(context.Background(), &buf, []string{src}, None, 0, nil, true); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(os.Getenv("S3CACHE_TEST_FEW_FDS_OUT"), buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		return
	}
	src := manySmallFiles(t)
	var serial bytes.Buffer
	if _, err := write(context.Background(), &serial, []string{src}, None, 0, nil, false); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tempDir(t), "archive")
	cmd := exec.Command(os.Args[0], "-test.run=^TestReadAheadWithFewDescriptors$", "-test.count=1")
	cmd.Env = append(os.Environ(), "S3CACHE_TEST_FEW_FDS_SRC="+src, "S3CACHE_TEST_FEW_FDS_OUT="+out)
	if log, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("archive with 24 descriptors: %v\n%s", err, log)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, serial.Bytes()) {
		t.Fatalf("the archive (%d bytes) differs from the one written serially (%d)", len(got), serial.Len())
	}
}

// A save cancelled while read-ahead holds files open closes every one of
// them.
func TestReadAheadCancelledClosesFiles(t *testing.T) {
	src := manySmallFiles(t)
	openFiles := func() int {
		fds, err := os.ReadDir("/dev/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(fds)
	}
	before := openFiles()
	for _, c := range []Compression{None, Gzip} { // they write as the tar writer goes
		ctx, cancel := context.WithCancel(context.Background())
		writes := 0
		w := writerFunc(func(p []byte) (int, error) {
			if writes++; writes == 2 {
				time.Sleep(50 * time.Millisecond) // read-ahead opens files meanwhile
				cancel()
			}
			return len(p), nil
		})
		if _, err := write(ctx, w, []string{src}, c, 0, nil, true); err == nil {
			t.Fatalf("%s: a cancelled write succeeded", c)
		}
		cancel()
		if after := openFiles(); after != before {
			t.Errorf("%s: %d files open after the write, %d before", c, after, before)
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
