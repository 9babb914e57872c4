package archive

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// These tests need root (CI runs as root): they mount filesystems.

// mountTmpfs mounts a fresh tmpfs on dir until the test ends.
func mountTmpfs(t *testing.T, dir string) {
	t.Helper()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=256m"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v (this test needs root, or CAP_SYS_ADMIN, to mount; CI runs it as root)", dir, err)
	}
	t.Cleanup(func() { unmount(t, dir) })
}

// bindMount bind-mounts src on dir until the test ends.
func bindMount(t *testing.T, src, dir string) {
	t.Helper()
	if err := syscall.Mount(src, dir, "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mount %s on %s: %v (this test needs root, or CAP_SYS_ADMIN, to mount; CI runs it as root)", src, dir, err)
	}
	t.Cleanup(func() { unmount(t, dir) })
}

func unmount(t *testing.T, dir string) {
	if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
		t.Errorf("unmount %s: %v", dir, err)
	}
}

// inode returns the device and inode numbers of p.
func inode(t *testing.T, p string) [2]uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return [2]uint64{st.Dev, st.Ino}
}

// isMounted reports whether dir is listed as a mount point of this process.
func isMounted(t *testing.T, dir string) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// TestExtractIntoMountPoint: a target that is a mount point (a tmpfs, a bind
// mount of a directory of the same filesystem, so with the same st_dev as
// its parent) is restored into, stays the same mount point, gets the
// archive's root mode and mtime, and is left untouched by a failed restore.
func TestExtractIntoMountPoint(t *testing.T) {
	for _, kind := range []string{"tmpfs", "bind mount of a subdirectory"} {
		t.Run(kind, func(t *testing.T) {
			tmp := tempDir(t)
			src := filepath.Join(tmp, "src")
			makeSampleTree(t, src)
			data, _ := mustWrite(t, []string{src}, Zstd, 0, nil)

			parent := filepath.Join(tmp, "parent")
			target := filepath.Join(parent, "target")
			if err := os.MkdirAll(target, 0o755); err != nil {
				t.Fatal(err)
			}
			if kind == "tmpfs" {
				mountTmpfs(t, target)
			} else {
				elsewhere := filepath.Join(tmp, "elsewhere", "sub")
				if err := os.MkdirAll(elsewhere, 0o755); err != nil {
					t.Fatal(err)
				}
				bindMount(t, elsewhere, target)
			}
			writeFile(t, filepath.Join(target, "previous/file"), "previous", 0o644, time.Unix(1_400_000_000, 0))
			writeFile(t, filepath.Join(target, "exec.sh"), "previous exec", 0o700, time.Unix(1_400_000_000, 0))
			if err := os.Chmod(filepath.Join(target, "previous"), 0o555); err != nil {
				t.Fatal(err)
			}
			id := inode(t, target)

			// A damaged stream: nothing changes, nothing is left.
			before := snapshot(t, parent) // includes the mount point's mtime
			if _, err := Extract(context.Background(), bytes.NewReader(data[:len(data)-100]), []string{target}, Zstd, nil); err == nil {
				t.Fatal("a truncated stream was accepted")
			}
			if got := snapshot(t, parent); got != before {
				t.Errorf("failed restore changed the mount point:\n%s\nwant:\n%s", got, before)
			}
			assertNoLeftovers(t, target)
			assertNoLeftovers(t, parent)

			var w warnings
			if _, err := Extract(context.Background(), bytes.NewReader(data), []string{target}, Zstd, &w); err != nil {
				t.Fatalf("restore into a mount point: %v", err)
			}
			assertSameTree(t, src, target) // includes the root's mode and mtime
			if got := inode(t, target); got != id {
				t.Errorf("target is another inode now: %v, was %v", got, id)
			}
			if !isMounted(t, target) {
				t.Error("target is no longer a mount point")
			}
			assertNoLeftovers(t, target)
			assertNoLeftovers(t, parent)
			if len(w.msgs) > 1 { // the fifo of the sample tree
				t.Errorf("warnings: %q", w.msgs)
			}
		})
	}
}

// TestExtractFileOverMountPoint: a file cannot replace a mount point; the
// error says so and the mount point is untouched.
func TestExtractFileOverMountPoint(t *testing.T) {
	tmp := tempDir(t)
	src := filepath.Join(tmp, "file")
	writeFile(t, src, "a file", 0o644, time.Now())
	data, _ := mustWrite(t, []string{src}, Zstd, 0, nil)
	target := filepath.Join(tmp, "target")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	mountTmpfs(t, target)
	writeFile(t, filepath.Join(target, "keep"), "keep", 0o644, time.Unix(1_400_000_000, 0))
	before := snapshot(t, tmp)
	_, err := Extract(context.Background(), bytes.NewReader(data), []string{target}, Zstd, nil)
	if err == nil || !strings.Contains(err.Error(), "mount point") {
		t.Fatalf("got %v, want an error about the mount point", err)
	}
	if got := snapshot(t, tmp); got != before {
		t.Errorf("mount point changed:\n%s\nwant:\n%s", got, before)
	}
	assertNoLeftovers(t, target)
	assertNoLeftovers(t, tmp)
}

// TestSweepLeftovers: a restore removes what killed restores of the same
// target left (staging, trash and old helpers, also as a version without
// pids in the names wrote them), but not a helper a live process holds
// (flocked), nor helpers of other targets, nor the lock file.
func TestSweepLeftovers(t *testing.T) {
	tmp := tempDir(t)
	src := filepath.Join(tmp, "src")
	makeSampleTree(t, src)
	data, _ := mustWrite(t, []string{src}, Zstd, 0, nil)

	parent := filepath.Join(tmp, "parent")
	target := filepath.Join(parent, "target")
	stale := []string{
		".target.s3-cache-staging-123456789",    // as 41aa5b3 named them
		".target.s3-cache-old-ABCDEFGHIJKLMNOP", // idem
		".target.s3-cache-staging-4242-QWERTYUIOPASDFGHJKLZXCVBNM",
		".target.s3-cache-trash-4242-QWERTYUIOPASDFGHJKLZXCVBNM",
		".target.s3-cache-old-4242-QWERTYUIOPASDFGHJKLZXCVBNM",
	}
	for _, n := range stale {
		writeFile(t, filepath.Join(parent, n, "root/deep/file"), "stale", 0o444, time.Now())
		if err := os.Chmod(filepath.Join(parent, n, "root/deep"), 0o555); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(parent, ".target.s3-cache-old-FILEFILE"), "an old file target", 0o644, time.Now())
	mustSymlink(t, "/", filepath.Join(parent, ".target.s3-cache-old-SYMLINK"))
	keep := []string{
		".target.s3-cache-staging-777-LIVELIVELIVE",         // flocked below: live
		".target.s3-cache-staging-x.s3-cache-staging-1-ABC", // a helper of "target.s3-cache-staging-x"
		".targetx.s3-cache-staging-1-ABC",                   // of "targetx"
		".target.s3-cache.lock",                             // the host lock
		"target.s3-cache-staging-1-ABC",                     // not hidden: somebody's file
		".target.s3-cache-staging-",                         // no suffix
		".target.s3-cache-backup-1-ABC",                     // unknown kind
		".target.s3-cache-staging-1-ABC.d",                  // dot in suffix
	}
	for _, n := range keep {
		writeFile(t, filepath.Join(parent, n, "file"), "keep", 0o644, time.Now())
	}
	live, err := os.Open(filepath.Join(parent, keep[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if err := syscall.Flock(int(live.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}

	var w warnings
	if _, err := Extract(context.Background(), bytes.NewReader(data), []string{target}, Zstd, &w); err != nil {
		t.Fatal(err)
	}
	assertSameTree(t, src, target)
	got := dirNames(t, parent)
	want := append([]string{"target"}, keep...)
	slices.Sort(want)
	if !slices.Equal(got, want) { // ReadDir sorts
		t.Errorf("after the restore %s holds\n%q\nwant\n%q", parent, got, want)
	}
	if !w.contains("left by an interrupted restore") {
		t.Errorf("no warning about the leftovers removed: %q", w.msgs)
	}
}

// TestTargetAlwaysExists: while restores replace a target again and again,
// another goroutine looking at the target never finds it missing.
func TestTargetAlwaysExists(t *testing.T) {
	tmp := tempDir(t)
	var archives [2][]byte
	for i := range archives {
		src := filepath.Join(tmp, fmt.Sprintf("src%d", i))
		writeFile(t, filepath.Join(src, "file"), fmt.Sprint("content ", i), 0o644, time.Now())
		archives[i], _ = mustWrite(t, []string{src}, None, 0, nil)
	}
	target := filepath.Join(tmp, "parent", "target")
	if _, err := Extract(context.Background(), bytes.NewReader(archives[0]), []string{target}, None, nil); err != nil {
		t.Fatal(err)
	}

	var missing, looks atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := os.Lstat(target); errors.Is(err, fs.ErrNotExist) {
				missing.Add(1)
			}
			looks.Add(1)
		}
	})
	const restores = 100
	for i := range restores {
		if _, err := Extract(context.Background(), bytes.NewReader(archives[i%2]), []string{target}, None, nil); err != nil {
			t.Error(err)
			break
		}
	}
	close(stop)
	wg.Wait()
	if n := missing.Load(); n > 0 {
		t.Errorf("the target was missing %d times out of %d looks during %d restores", n, looks.Load(), restores)
	}
	t.Logf("%d looks during %d restores", looks.Load(), restores)
}

// TestLongTargetName: a target whose own name is as long as a name can be
// restores, and its helpers' names fit (no ENAMETOOLONG).
func TestLongTargetName(t *testing.T) {
	for name, base := range map[string]string{
		"255 ASCII bytes":           strings.Repeat("x", 255),
		"250 bytes of 2-byte UTF-8": strings.Repeat("é", 125),
		"240 bytes, not UTF-8":      strings.Repeat("\xe9", 240),
	} {
		t.Run(name, func(t *testing.T) {
			tmp := tempDir(t)
			src := filepath.Join(tmp, "src")
			writeFile(t, filepath.Join(src, "file"), "content", 0o644, time.Unix(1_600_000_000, 0))
			data, _ := mustWrite(t, []string{src}, Zstd, 0, nil)
			target := filepath.Join(tmp, "parent", base)
			for range 2 { // once new, once over the previous content
				if _, err := Extract(context.Background(), bytes.NewReader(data), []string{target}, Zstd, nil); err != nil {
					t.Fatal(err)
				}
				assertSameTree(t, src, target)
				assertNoLeftovers(t, filepath.Dir(target))
			}
		})
	}
}

// childEnv tells the test binary to run killedRestoreChild instead of tests.
const childEnv = "S3_CACHE_ARCHIVE_TEST_CHILD"

// TestKilledRestoreIsSwept: a restore killed (SIGKILL, like a cancelled job
// past its grace period, or a power cut) leaves its staging directory; the
// next restore of the target removes it. Also for a long target name.
func TestKilledRestoreIsSwept(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		killedRestoreChild(t)
		return
	}
	for name, base := range map[string]string{"short name": "target", "long name": strings.Repeat("y", 250)} {
		t.Run(name, func(t *testing.T) {
			tmp := tempDir(t)
			src := filepath.Join(tmp, "src")
			for i := range 50 {
				writeFile(t, filepath.Join(src, fmt.Sprintf("d%d/file", i)), strings.Repeat("x", 10_000), 0o644, time.Unix(1_600_000_000, 0))
			}
			data, _ := mustWrite(t, []string{src}, None, 0, nil)
			archive := filepath.Join(tmp, "archive")
			if err := os.WriteFile(archive, data, 0o600); err != nil {
				t.Fatal(err)
			}
			parent := filepath.Join(tmp, "parent")
			target := filepath.Join(parent, base)
			writeFile(t, filepath.Join(target, "previous"), "previous", 0o644, time.Now())

			cmd := exec.Command(os.Args[0], "-test.run=^TestKilledRestoreIsSwept$")
			cmd.Env = append(os.Environ(), childEnv+"=1", "CHILD_ARCHIVE="+archive, "CHILD_TARGET="+target)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line, _ := bufio.NewReader(out).ReadString('\n')
			if !strings.Contains(line, "staged") {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("the child restore did not get to stage its content: %q", line)
			}
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			entries, _ := os.ReadDir(parent)
			if len(entries) < 2 {
				t.Fatalf("the killed restore left nothing to sweep: %v", entries)
			}

			if _, err := Extract(context.Background(), bytes.NewReader(data), []string{target}, None, nil); err != nil {
				t.Fatal(err)
			}
			assertSameTree(t, src, target)
			assertNoLeftovers(t, parent)
		})
	}
}

// killedRestoreChild restores CHILD_ARCHIVE into CHILD_TARGET but stops
// before the last bytes, says "staged" and waits to be killed.
func killedRestoreChild(t *testing.T) {
	data, err := os.ReadFile(os.Getenv("CHILD_ARCHIVE"))
	if err != nil {
		t.Fatal(err)
	}
	r := io.MultiReader(bytes.NewReader(data[:len(data)-2048]), readerFunc(func([]byte) (int, error) {
		fmt.Println("staged")
		select {} // until killed
	}))
	_, err = Extract(context.Background(), r, []string{os.Getenv("CHILD_TARGET")}, None, nil)
	fmt.Println("child restore ended:", err)
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// TestMountSwapUndo: when a later target cannot be swapped, a mount point
// already restored into gets its previous children back, and its mode.
func TestMountSwapUndo(t *testing.T) {
	parent := tempDir(t)
	mount, other := filepath.Join(parent, "mount"), filepath.Join(parent, "other")
	if err := os.Mkdir(mount, 0o755); err != nil {
		t.Fatal(err)
	}
	mountTmpfs(t, mount)
	writeFile(t, filepath.Join(mount, "old/file"), "old", 0o644, time.Unix(1_000_000_000, 0))
	writeFile(t, filepath.Join(mount, "top"), "top", 0o644, time.Unix(1_000_000_000, 0))
	if err := os.Chmod(mount, 0o555); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(other, "keep"), "keep", 0o644, time.Unix(1_000_000_000, 0))
	before := snapshot(t, parent)

	s1, err := newStagedTarget(mount)
	if err != nil {
		t.Fatal(err)
	}
	if !s1.mount {
		t.Fatal("the tmpfs was not recognised as a mount point")
	}
	writeFile(t, filepath.Join(s1.root, "new"), "new", 0o644, time.Now())
	s2, err := newStagedTarget(other) // no root: its swap fails
	if err != nil {
		t.Fatal(err)
	}
	x := &extraction{targets: []string{mount, other}, staged: []*stagedTarget{s1, s2}, warn: warnOrDiscard(nil)}
	assertSwapUndone(t, x, parent, before)
	assertNoLeftovers(t, mount)
}

// TestSaveSkipsLeftoversInsideATarget: a restore into a mount point stages
// inside it, so a killed one leaves its helpers there; a save of that
// target stores the cache, not the helpers (a look-alike name is kept),
// however the path is spelled.
func TestSaveSkipsLeftoversInsideATarget(t *testing.T) {
	for _, spell := range []struct {
		name string
		cd   string // the working directory, relative to the test's directory ("": unchanged)
		src  func(target string) string
	}{
		{"clean", "", func(target string) string { return target }},
		{"trailing slash", "", func(target string) string { return target + "/" }},
		{"dot segment", "", func(target string) string { return target + "/." }},
		{"two slashes", "", func(target string) string { return target + "//" }},
		{"the working directory", "target", func(string) string { return "." }},
		{"relative, through its parent", "target", func(string) string { return "../target" }},
	} {
		t.Run(spell.name, func(t *testing.T) {
			tmp := tempDir(t)
			target := filepath.Join(tmp, "target")
			writeFile(t, filepath.Join(target, "kept"), "kept", 0o644, time.Unix(1_400_000_000, 0))
			writeFile(t, filepath.Join(target, leftoverName(nameStem("target"), kindStaging), "root", "stale"), "stale", 0o644, time.Now())
			writeFile(t, filepath.Join(target, leftoverName(nameStem("target"), kindTrash)), "stale", 0o644, time.Now())
			writeFile(t, filepath.Join(target, ".target.s3-cache-staging"), "look-alike", 0o644, time.Now())

			if spell.cd != "" {
				t.Chdir(filepath.Join(tmp, spell.cd))
			}
			data, _ := mustWrite(t, []string{spell.src(target)}, None, 0, nil)
			restored := filepath.Join(tmp, "restored")
			if _, err := Extract(context.Background(), bytes.NewReader(data), []string{restored}, None, nil); err != nil {
				t.Fatal(err)
			}
			if names, want := dirNames(t, restored), []string{".target.s3-cache-staging", "kept"}; !slices.Equal(names, want) {
				t.Errorf("restored %q, want %q", names, want)
			}
		})
	}
}

// TestKeptContentIsNotSwept: when an undo fails, the staging directory holds
// the target's previous content; it is moved to a kept name that the next
// restore's sweep leaves alone, and the error names it.
func TestKeptContentIsNotSwept(t *testing.T) {
	tmp := tempDir(t)
	target := filepath.Join(tmp, "target")
	s, err := newStagedTarget(target)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(s.root, "previous"), "the user's", 0o644, time.Now())
	s.keep = true // what a failed undo sets
	err = s.remove()
	if err == nil || !strings.Contains(err.Error(), ".target.s3-cache-kept-") {
		t.Fatalf("remove: %v, want an error naming the kept directory", err)
	}
	var w warnings
	sweepTarget(target, w.Warnf)
	matches, _ := filepath.Glob(filepath.Join(tmp, ".target.s3-cache-kept-*", "root", "previous"))
	if len(matches) != 1 {
		t.Fatalf("the kept content is gone after a sweep: %q", matches)
	}
}
