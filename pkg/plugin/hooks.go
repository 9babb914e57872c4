package plugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cache"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cachekey"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
)

// The variables the shim exports to the command.
const (
	OutputHit      = config.Prefix + "HIT"       // exact, fallback or miss
	OutputHitKey   = config.Prefix + "HIT_KEY"   // the object key restored
	OutputHitLevel = config.Prefix + "HIT_LEVEL" // its level
)

// PreCommand restores the cache and records the keys post-command will save under: they are
// computed now, before the command can change the manifest.
func PreCommand(ctx context.Context, r *Run) error {
	if err := r.checkBinaryCache(); err != nil {
		return err
	}
	c := r.Config
	saveKeys, err := r.keys(ctx, c.Save)
	if err != nil {
		return err
	}
	st := state{SaveKeys: saveKeys, Hit: cache.Miss}
	var restoreErr error
	if c.Restore != "" {
		r.Outputs[OutputHit] = string(cache.Miss)
		var res cache.Restored
		res, restoreErr = r.restore(ctx)
		if restoreErr == nil && res.Hit != cache.Miss {
			st.Hit, st.HitKey = res.Hit, res.Key.Name
			r.Outputs[OutputHit] = string(res.Hit)
			r.Outputs[OutputHitKey] = res.Key.Name
			r.Outputs[OutputHitLevel] = string(res.Key.Level)
		}
	}
	// A cancelled job runs no post-command: leave no state file behind for it.
	if len(c.Save) > 0 && ctx.Err() == nil {
		if err := r.writeState(st); err != nil {
			return errors.Join(restoreErr, err)
		}
	}
	return restoreErr
}

func (r *Run) restore(ctx context.Context) (cache.Restored, error) {
	candidates, err := r.keys(ctx, r.Config.RestoreLadder())
	if err != nil {
		return cache.Restored{Hit: cache.Miss}, err
	}
	cc, err := r.newCache(ctx)
	if err != nil {
		return cache.Restored{Hit: cache.Miss}, err
	}
	return cc.Restore(ctx, candidates)
}

// PostCommand saves the cache under every save level, when the command's outcome asks for it.
func PostCommand(ctx context.Context, r *Run) error {
	if err := r.checkBinaryCache(); err != nil {
		return err
	}
	c := r.Config
	if len(c.Save) == 0 {
		return nil
	}
	defer r.removeState()
	defer removeStaleStates(time.Now().Add(-staleState))
	if reason := r.skipForExitStatus(); reason != "" {
		r.Log.Group("Not saving cache")
		r.Log.Infof("%s", reason)
		return nil
	}
	st, ok := r.readState()
	if !ok {
		r.Log.Infof("No state from pre-command: computing the keys now")
		keys, err := r.keys(ctx, c.Save)
		if err != nil {
			return err
		}
		st = state{SaveKeys: keys, Hit: cache.Miss}
	}
	cc, err := r.newCache(ctx)
	if err != nil {
		return err
	}
	var keys []cachekey.Key
	for _, k := range st.SaveKeys {
		if st.Hit == cache.Exact && st.HitKey == k.Name && !c.Cache.Force {
			r.Log.Group("Saving cache (%s level)", k.Level)
			r.Log.Infof("Restored an exact hit of %s: nothing to save", k.Name)
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil
	}
	_, err = cc.Save(ctx, keys)
	return err
}

// skipForExitStatus applies the when key to BUILDKITE_COMMAND_EXIT_STATUS.
func (r *Run) skipForExitStatus() string {
	succeeded := r.Job.ExitStatus == "0" || r.Job.ExitStatus == ""
	switch {
	case r.Config.When == config.WhenOnSuccess && !succeeded:
		return fmt.Sprintf("The command failed (exit status %s) and when is on-success", r.Job.ExitStatus)
	case r.Config.When == config.WhenOnFailure && succeeded:
		return "The command succeeded and when is on-failure"
	}
	return ""
}

// staleState is the age after which a state file is an orphan: its job was cancelled after
// pre-command, so no post-command consumed it.
const staleState = 24 * time.Hour

// removeStaleStates removes orphaned state files (and temporary files of writers that were
// killed) older than before from this user's state directory, if it is private.
func removeStaleStates(before time.Time) {
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
}
