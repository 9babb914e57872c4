package plugin

// Why a file: what each hook does, in order; the mechanics are in the files named after them.

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
func PreCommand(ctx context.Context, inv *Invocation) error {
	if err := inv.checkBinaryCache(); err != nil {
		return err
	}
	c := inv.Config
	sc := inv.scope()
	save := len(c.Save) > 0 && sc.noSave == ""
	var saveKeys []cachekey.Key
	if save {
		var err error
		if saveKeys, err = inv.keys(ctx, c.Save, sc.write); err != nil {
			return err
		}
	}
	st := state{SaveKeys: saveKeys, Hit: cache.Miss}
	var restoreErr error
	if c.Restore != "" {
		inv.Outputs[OutputHit] = string(cache.Miss)
		var res cache.Restored
		res, restoreErr = inv.restore(ctx, sc)
		if restoreErr == nil && res.Hit != cache.Miss {
			inv.Log.Infof("Restored from %s", namespaceName(res.Key.Namespace))
			st.Hit, st.HitKey = res.Hit, res.Key.Name
			inv.Outputs[OutputHit] = string(res.Hit)
			inv.Outputs[OutputHitKey] = res.Key.Name
			inv.Outputs[OutputHitLevel] = string(res.Key.Level)
		}
	}
	// A cancelled job runs no post-command: leave no state file behind for it.
	if save && ctx.Err() == nil {
		if err := inv.writeState(st); err != nil {
			return errors.Join(restoreErr, err)
		}
	}
	return restoreErr
}

// restore tries every level of the ladder in the build's own namespace, then every level in the
// shared one: a branch's own caches, however wide, are closer to it than the default branch's.
// When all miss, the newest of the file-level family in each namespace, in the same order.
// Only the first candidate is an exact hit.
func (inv *Invocation) restore(ctx context.Context, sc scope) (cache.Restored, error) {
	ladder := inv.Config.RestoreLadder()
	var candidates, families []cachekey.Key
	for _, ns := range sc.reads {
		keys, err := inv.keys(ctx, ladder, ns)
		if err != nil {
			return cache.Restored{Hit: cache.Miss}, err
		}
		candidates = append(candidates, keys...)
		if inv.Config.RestoreNewest && slices.Contains(ladder, config.LevelFile) {
			fam, err := inv.family(ctx, ns)
			if err != nil {
				return cache.Restored{Hit: cache.Miss}, err
			}
			families = append(families, fam)
		}
	}
	candidates = append(candidates, families...)
	from := namespaceName(sc.write)
	if len(sc.reads) > 1 {
		from += ", then from the shared namespace"
	}
	inv.Log.Infof("Restoring from %s: %s", from, sc.why)
	cc, err := inv.openCache(ctx)
	if err != nil {
		return cache.Restored{Hit: cache.Miss}, err
	}
	return cc.Restore(ctx, candidates)
}

// PostCommand saves the cache under every save level, when the command's outcome asks for it.
func PostCommand(ctx context.Context, inv *Invocation) error {
	if err := inv.checkBinaryCache(); err != nil {
		return err
	}
	c := inv.Config
	if len(c.Save) == 0 {
		return nil
	}
	defer inv.removeState()
	defer removeStaleStates(time.Now().Add(-staleState))
	sc := inv.scope()
	if sc.noSave != "" {
		inv.Log.Group("Not saving cache")
		inv.Log.Infof("%s", sc.noSave)
		return nil
	}
	if reason := inv.skipForExitStatus(); reason != "" {
		inv.Log.Group("Not saving cache")
		inv.Log.Infof("%s", reason)
		return nil
	}
	st, ok := inv.readState()
	if !ok {
		inv.Log.Infof("No state from pre-command: computing the keys now")
		keys, err := inv.keys(ctx, c.Save, sc.write)
		if err != nil {
			return err
		}
		st = state{SaveKeys: keys, Hit: cache.Miss}
	}
	cc, err := inv.openCache(ctx)
	if err != nil {
		return err
	}
	var keys []cachekey.Key
	for _, k := range st.SaveKeys {
		if st.Hit == cache.Exact && st.HitKey == k.Name && !c.Cache.Force {
			inv.Log.Group("Saving cache (%s level)", k.Level)
			inv.Log.Infof("Restored an exact hit of %s: nothing to save", k.Name)
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil
	}
	inv.Log.Infof("Saving to %s: %s", namespaceName(keys[0].Namespace), sc.why)
	_, err = cc.Save(ctx, keys)
	return err
}

// skipForExitStatus applies the when key to BUILDKITE_COMMAND_EXIT_STATUS.
func (inv *Invocation) skipForExitStatus() string {
	succeeded := inv.Job.ExitStatus == "0" || inv.Job.ExitStatus == ""
	switch {
	case inv.Config.When == config.WhenOnSuccess && !succeeded:
		return fmt.Sprintf("The command failed (exit status %s) and when is on-success", inv.Job.ExitStatus)
	case inv.Config.When == config.WhenOnFailure && succeeded:
		return "The command succeeded and when is on-failure"
	}
	return ""
}
