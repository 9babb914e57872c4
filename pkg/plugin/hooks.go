package plugin

// Why a file: what each hook does, in order; the mechanics are in the files named after them.

import (
	"context"
	"errors"
	"fmt"
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
	saveKeys, err := inv.keys(ctx, c.Save)
	if err != nil {
		return err
	}
	st := state{SaveKeys: saveKeys, Hit: cache.Miss}
	var restoreErr error
	if c.Restore != "" {
		inv.Outputs[OutputHit] = string(cache.Miss)
		start := time.Now()
		var res cache.Restored
		res, restoreErr = inv.restore(ctx)
		if restoreErr == nil && res.Hit != cache.Miss {
			st.Hit, st.HitKey = res.Hit, res.Key.Name
			inv.Outputs[OutputHit] = string(res.Hit)
			inv.Outputs[OutputHitKey] = res.Key.Name
			inv.Outputs[OutputHitLevel] = string(res.Key.Level)
		}
		inv.annotate(ctx, []summaryRow{restoreRow(res, restoreErr, time.Since(start))})
	}
	// A cancelled job runs no post-command: leave no state file behind for it.
	if len(c.Save) > 0 && ctx.Err() == nil {
		if err := inv.writeState(st); err != nil {
			return errors.Join(restoreErr, err)
		}
	}
	return restoreErr
}

func (inv *Invocation) restore(ctx context.Context) (cache.Restored, error) {
	candidates, err := inv.keys(ctx, inv.Config.RestoreLadder())
	if err != nil {
		return cache.Restored{Hit: cache.Miss}, err
	}
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
	if reason := inv.skipForExitStatus(); reason != "" {
		inv.Log.Group("Not saving cache")
		inv.Log.Infof("%s", reason)
		inv.annotate(ctx, []summaryRow{{op: "save", result: "not saved: " + reason}})
		return nil
	}
	st, ok := inv.readState()
	if !ok {
		inv.Log.Infof("No state from pre-command: computing the keys now")
		keys, err := inv.keys(ctx, c.Save)
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
	var rows []summaryRow
	for _, k := range st.SaveKeys {
		if st.Hit == cache.Exact && st.HitKey == k.Name && !c.Cache.Force {
			inv.Log.Group("Saving cache (%s level)", k.Level)
			inv.Log.Infof("Restored an exact hit of %s: nothing to save", k.Name)
			rows = append(rows, skippedRow(k, "restored as an exact hit"))
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		inv.annotate(ctx, rows)
		return nil
	}
	saved, err := cc.Save(ctx, keys)
	inv.annotate(ctx, append(rows, saveRows(saved, err)...))
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
