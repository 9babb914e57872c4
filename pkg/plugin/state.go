package plugin

// Why a file: the state file's whole life (written by pre-command, read and removed by
// post-command, swept when orphaned) in one place; private.go checks its directory.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/atomicfile"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cache"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cachekey"
)

// state is handed from pre-command to post-command.
type state struct {
	SaveKeys []cachekey.Key `json:"save_keys"`
	Hit      cache.Hit      `json:"hit"`
	HitKey   string         `json:"hit_key,omitempty"`
	// LookedUp: pre-command was lookup-only, so the hit was found but never restored.
	LookedUp bool `json:"looked_up,omitempty"`
}

var unsafeInName = regexp.MustCompile(`[^A-Za-z0-9-]`)

// statePath is scoped to the job and to this plugin instance: a step may use the plugin twice.
// It lies in this user's private state directory.
func (inv *Invocation) statePath() string {
	job := unsafeInName.ReplaceAllString(inv.Job.ID, "_")
	return filepath.Join(stateDir(), fmt.Sprintf("s3-cache-%s-%s.json", job, inv.instanceHash()))
}

// instanceHash tells the plugin's instances in one step apart: a hash of what each caches where.
func (inv *Invocation) instanceHash() string {
	c := inv.Config
	doc, _ := json.Marshal([]any{c.Paths, c.Manifest, c.Restore, c.Save, c.KeyExtra, c.Cache.Compression, c.Prefix, c.Store.Bucket})
	sum := sha256.Sum256(doc)
	return hex.EncodeToString(sum[:8])
}

func (inv *Invocation) writeState(st state) error {
	doc, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := privateDir(stateDir(), true); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return atomicfile.Write(inv.statePath(), doc, 0o600)
}

// readState reads what pre-command left, if this user wrote it: a file in a directory someone
// else controls, or that someone else owns, is ignored with a warning.
func (inv *Invocation) readState() (state, bool) {
	p := inv.statePath()
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return state{}, false
	}
	if err == nil {
		err = privateDir(filepath.Dir(p), false)
	}
	if err == nil {
		err = checkPrivate(p, fi, false)
	}
	if err != nil {
		inv.Log.Warnf("ignoring the state from pre-command: %v", err)
		return state{}, false
	}
	var st state
	doc, err := os.ReadFile(p)
	if err != nil || json.Unmarshal(doc, &st) != nil {
		return state{}, false
	}
	return st, true
}

// removeState removes the state file, unless its directory is not this user's private one.
func (inv *Invocation) removeState() {
	if privateDir(stateDir(), false) == nil {
		_ = os.Remove(inv.statePath())
	}
}

// staleState is the age after which a state file is an orphan: its job was cancelled after
// pre-command, so no post-command consumed it.
const staleState = 24 * time.Hour

// removeStaleStates removes orphaned state files (and temporary files of writers that were
// killed) older than before from this user's state directory, if it is private.
func removeStaleStates(before time.Time) {
	removeStaleLeftovers(before)
	dir := stateDir()
	if privateDir(dir, false) != nil {
		return
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && fi.ModTime().Before(before) {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	// The stamps of warm restores stay however old they are (a warm hit does not rewrite its
	// stamp); only the temporary files of killed writers go.
	entries, _ = os.ReadDir(filepath.Join(dir, warmDir))
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && strings.HasPrefix(e.Name(), ".") && fi.ModTime().Before(before) {
			_ = os.Remove(filepath.Join(dir, warmDir, e.Name()))
		}
	}
}

// warmDir is the subdirectory of the state directory that holds the stamps of warm restores
// (docs/design.md#warm-restores): a directory, so that the sweep of old state files spares them.
const warmDir = "warm"

// legacyState names the state files of versions before the private state directory:
// s3-cache-<job>-<16 hex digits>.json, and nothing else a user may keep in TMPDIR.
var legacyState = regexp.MustCompile(`^s3-cache-[A-Za-z0-9_-]+-[0-9a-f]{16}\.json$`)

// removeStaleLeftovers removes, from the temp directory, what this user's killed hooks and
// earlier versions left there before before: the shim's private env directories
// (s3-cache-env.*) and state files of the old shared location (s3-cache-*.json). Only entries
// this user owns, never through a symlink.
func removeStaleLeftovers(before time.Time) {
	entries, _ := os.ReadDir(os.TempDir())
	for _, e := range entries {
		name := e.Name()
		env := strings.HasPrefix(name, "s3-cache-env.") && e.IsDir()
		legacy := legacyState.MatchString(name) && e.Type().IsRegular()
		if !env && !legacy {
			continue
		}
		fi, err := e.Info()
		if err != nil || !fi.ModTime().Before(before) {
			continue
		}
		if uid, known := owner(fi); known && uid != os.Getuid() {
			continue
		}
		_ = os.RemoveAll(filepath.Join(os.TempDir(), name))
	}
}
