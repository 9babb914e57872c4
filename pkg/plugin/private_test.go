package plugin

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/buildkite"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cache"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cachekey"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/s3"
)

const nobody = 65534 // another local user

func stateInvocation(t *testing.T, log *bytes.Buffer) *Invocation {
	t.Helper()
	t.Setenv("TMPDIR", filepath.Join(t.TempDir(), "tmp"))
	if err := os.MkdirAll(os.TempDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	return &Invocation{Config: &config.Config{Paths: []string{"node_modules"}, Store: s3.Options{Bucket: "b"}},
		Job: buildkite.Job{ID: "job-1"}, Log: buildkite.NewLog(log)}
}

// planted is what another user leaves where this job's state goes: keys of their choosing.
var planted = state{SaveKeys: []cachekey.Key{{Name: "attacker/key"}}, Hit: cache.Miss}

func TestStateTheJobUserDoesNotOwnIsIgnored(t *testing.T) {
	plant := func(t *testing.T, p string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(`{"save_keys":[{"name":"attacker/key"}],"hit":"miss"}`), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	chown := func(t *testing.T, paths ...string) {
		t.Helper()
		if os.Getuid() != 0 {
			t.Fatal("planting a file of another user needs root, to chown it: run the tests as root, as CI does")
		}
		for _, p := range paths {
			if err := os.Lchown(p, nobody, nobody); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, p string) // p is the state path
		says  string                       // in the warning and in writeState's error, if it fails
	}{
		{"a state file of another user", func(t *testing.T, p string) {
			plant(t, p)
			chown(t, p)
		}, "owned by uid 65534"},
		{"a state directory of another user", func(t *testing.T, p string) {
			plant(t, p)
			chown(t, p, filepath.Dir(p))
		}, "owned by uid 65534"},
		{"a state directory open to others", func(t *testing.T, p string) {
			plant(t, p)
			if err := os.Chmod(filepath.Dir(p), 0o1777); err != nil {
				t.Fatal(err)
			}
		}, "want 0700"},
		{"a symlink to another user's file", func(t *testing.T, p string) {
			theirs := filepath.Join(t.TempDir(), "theirs.json")
			plant(t, theirs)
			chown(t, theirs)
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(theirs, p); err != nil {
				t.Fatal(err)
			}
		}, "symlink"},
		{"a symlink to another user's directory", func(t *testing.T, p string) {
			theirs := filepath.Join(t.TempDir(), "theirs")
			plant(t, filepath.Join(theirs, filepath.Base(p)))
			chown(t, theirs, filepath.Join(theirs, filepath.Base(p)))
			_ = os.Remove(filepath.Dir(p)) // if it exists, it is empty
			if err := os.Symlink(theirs, filepath.Dir(p)); err != nil {
				t.Fatal(err)
			}
		}, "symlink"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log bytes.Buffer
			r := stateInvocation(t, &log)
			p := r.statePath()
			if !strings.HasPrefix(p, os.TempDir()+string(filepath.Separator)) {
				t.Fatalf("state path %s is not in the temp directory %s", p, os.TempDir())
			}
			tc.plant(t, p)
			if st, ok := r.readState(); ok {
				t.Fatalf("read the planted state %+v", st)
			}
			if !strings.Contains(log.String(), "ignoring the state from pre-command") || !strings.Contains(log.String(), tc.says) {
				t.Fatalf("warning %q, want one saying %q", log.String(), tc.says)
			}
			// Writing either refuses with the same reason or replaces the planted file with this
			// job's own, never writing through a symlink.
			err := r.writeState(state{Hit: cache.Exact, HitKey: "mine"})
			if err != nil {
				if !strings.Contains(err.Error(), tc.says) {
					t.Fatalf("writeState: %v, want an error saying %q", err, tc.says)
				}
				return
			}
			st, ok := r.readState()
			if !ok || st.HitKey != "mine" {
				t.Fatalf("after writeState, read %+v %v", st, ok)
			}
		})
	}
}

func TestStateRoundTripsInAPrivateDirectory(t *testing.T) {
	var log bytes.Buffer
	r := stateInvocation(t, &log)
	if err := r.writeState(planted); err != nil {
		t.Fatal(err)
	}
	st, ok := r.readState()
	if !ok || len(st.SaveKeys) != 1 || st.SaveKeys[0].Name != "attacker/key" {
		t.Fatalf("read %+v %v", st, ok)
	}
	fi, err := os.Lstat(filepath.Dir(r.statePath()))
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 || filepath.Dir(r.statePath()) == os.TempDir() {
		t.Fatalf("the state directory %s: %v %v, want a directory of its own with mode 0700", filepath.Dir(r.statePath()), fi, err)
	}
	if err := os.Remove(r.statePath()); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.readState(); ok || log.Len() != 0 {
		t.Fatalf("state left after its removal, or warnings: %q", log.String())
	}
}

func TestStaleStatesAreSwept(t *testing.T) {
	var log bytes.Buffer
	r := stateInvocation(t, &log)
	old := &Invocation{Config: r.Config, Job: buildkite.Job{ID: "cancelled-job"}, Log: r.Log}
	for _, x := range []*Invocation{r, old} {
		if err := x.writeState(planted); err != nil {
			t.Fatal(err)
		}
	}
	long := time.Now().Add(-48 * time.Hour)
	if err := os.Chtimes(old.statePath(), long, long); err != nil {
		t.Fatal(err)
	}
	removeStaleStates(time.Now().Add(-staleState))
	if _, err := os.Lstat(old.statePath()); err == nil {
		t.Error("a stale state file was not swept")
	}
	if _, ok := r.readState(); !ok {
		t.Error("a fresh state file was swept")
	}
}

// What killed shims and earlier versions left in the temp directory (env directories, state
// files of the old shared location) goes after a day, if this user owns it; nothing else does.
func TestStaleLeftoversInTheTempDirAreSwept(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	long := time.Now().Add(-48 * time.Hour)
	mk := func(name string, dir bool, age time.Time) string {
		p := filepath.Join(tmp, name)
		var err error
		if dir {
			err = os.MkdirAll(filepath.Join(p, "inner"), 0o700)
		} else {
			err = os.WriteFile(p, []byte("{}"), 0o600)
		}
		if err == nil {
			err = os.Chtimes(p, age, age)
		}
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	gone := []string{mk("s3-cache-env.abc123", true, long), mk("s3-cache-job-1-0123456789abcdef.json", false, long)}
	kept := []string{
		mk("s3-cache-env.fresh1", true, time.Now()),                   // a live hook's
		mk("s3-cache-job-2-0123456789abcdef.json", false, time.Now()), // too young
		mk("s3-cache-settings.json", false, long),                     // another tool's
		mk("other-env.abc", true, long),                               // not ours by name
		mk("s3-cache-env.notadir", false, long),                       // not a directory
	}
	theirs := mk("s3-cache-env.theirs", true, long)
	if os.Getuid() == 0 {
		if err := os.Lchown(theirs, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		kept = append(kept, theirs)
	}
	if err := os.Symlink(filepath.Join(tmp, "other-env.abc"), filepath.Join(tmp, "s3-cache-env.link")); err != nil {
		t.Fatal(err)
	}

	removeStaleStates(time.Now().Add(-staleState))
	for _, p := range gone {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s was not swept", filepath.Base(p))
		}
	}
	for _, p := range append(kept, filepath.Join(tmp, "s3-cache-env.link")) {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s was swept: %v", filepath.Base(p), err)
		}
	}
}

// The stamps of warm restores live in the private state directory and outlive the sweep of old
// state files, however old; what killed writers of them left goes.
func TestWarmStampsOutliveTheSweep(t *testing.T) {
	var log bytes.Buffer
	r := stateInvocation(t, &log)
	dir := r.cacheOptions().StampDir
	if dir != filepath.Join(stateDir(), warmDir) {
		t.Fatalf("stamp directory %q, want %s in the private state directory", dir, warmDir)
	}
	noErr(t, os.MkdirAll(dir, 0o700))
	stamp, tmp := filepath.Join(dir, "warm-0123.json"), filepath.Join(dir, ".warm-0123.json.tmp-42")
	long := time.Now().Add(-48 * time.Hour)
	for _, p := range []string{stamp, tmp} {
		noErr(t, os.WriteFile(p, []byte("{}"), 0o600))
		noErr(t, os.Chtimes(p, long, long))
	}
	removeStaleStates(time.Now().Add(-staleState))
	if _, err := os.Lstat(stamp); err != nil {
		t.Errorf("an old stamp was swept: %v", err)
	}
	if _, err := os.Lstat(tmp); err == nil {
		t.Error("an old temporary file of a stamp was not swept")
	}

	// A state directory open to others holds no stamps: none are trusted or recorded.
	noErr(t, os.Chmod(stateDir(), 0o777))
	if dir := r.cacheOptions().StampDir; dir != "" {
		t.Fatalf("stamp directory %q in a state directory open to others", dir)
	}
}

func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
