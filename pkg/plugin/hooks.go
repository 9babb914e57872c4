package plugin

// Why a file: what each hook does, in order; the mechanics are in the files named after them.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
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

// PreCommand restores the cache (or, lookup-only, finds what it would restore) and records the
// keys post-command will save under: they are computed now, before the command can change the
// manifest. With fail-on-cache-miss, a miss fails it.
func PreCommand(ctx context.Context, inv *Invocation) error {
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
	st := state{SaveKeys: saveKeys, Hit: cache.Miss, LookedUp: c.LookupOnly}
	var restoreErr error
	if c.Restore != "" {
		inv.Outputs[OutputHit] = string(cache.Miss)
		start := time.Now()
		var res cache.Restored
		var tried []cachekey.Key
		res, tried, restoreErr = inv.restore(ctx, sc)
		inv.usage.wait() // the hit's last-use marker, started with its download
		if restoreErr == nil && res.Hit != cache.Miss {
			verb := "Restored"
			if c.LookupOnly {
				verb = "Found"
			}
			inv.Log.Infof("%s from %s", verb, namespaceName(res.Key.Namespace))
			st.Hit, st.HitKey = res.Hit, res.Key.Name
			inv.Outputs[OutputHit] = string(res.Hit)
			inv.Outputs[OutputHitKey] = res.Key.Name
			inv.Outputs[OutputHitLevel] = string(res.Key.Level)
		}
		row := restoreRow(res, restoreErr, time.Since(start))
		if c.LookupOnly && restoreErr == nil && res.Hit != cache.Miss {
			row.result, row.moved = string(res.Hit)+" hit (lookup only, nothing downloaded)", false
		}
		inv.annotate(ctx, []summaryRow{row})
		var cerr *config.Error
		if c.FailOnCacheMiss && st.Hit == cache.Miss && ctx.Err() == nil && !errors.As(restoreErr, &cerr) {
			restoreErr = &missError{tried: tried, cause: restoreErr}
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
// Only the first candidate is an exact hit. With lookup-only it only finds what it would
// restore. It returns the candidates it tried.
func (inv *Invocation) restore(ctx context.Context, sc scope) (cache.Restored, []cachekey.Key, error) {
	miss := cache.Restored{Hit: cache.Miss}
	ladder := inv.Config.RestoreLadder()
	var candidates, families []cachekey.Key
	for _, ns := range sc.reads {
		keys, err := inv.keys(ctx, ladder, ns)
		if err != nil {
			return miss, nil, err
		}
		candidates = append(candidates, keys...)
		if inv.Config.RestoreNewest && slices.Contains(ladder, config.LevelFile) {
			fam, err := inv.family(ctx, ns)
			if err != nil {
				return miss, nil, err
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
		return miss, candidates, err
	}
	var res cache.Restored
	if inv.Config.LookupOnly {
		res, err = cc.Lookup(ctx, candidates)
	} else {
		res, err = cc.Restore(ctx, candidates)
	}
	return res, candidates, err
}

// missError fails pre-command on a miss when fail-on-cache-miss is on, whatever soft-fail says
// (see exitStatus). A restore that failed is a miss: cause is its error.
type missError struct {
	tried []cachekey.Key
	cause error
}

func (e *missError) Error() string {
	names := make([]string, len(e.tried))
	for i, k := range e.tried {
		names[i] = k.Name
		if k.Newest {
			names[i] += "* (newest, any manifest)"
		}
	}
	why := "no cache at any of the keys"
	if e.cause != nil {
		why = "the restore failed (" + strings.Join(strings.Fields(e.cause.Error()), " ") + ")"
	}
	return fmt.Sprintf("cache miss and fail-on-cache-miss is on: %s; tried %s", why, strings.Join(names, ", "))
}

func (e *missError) Unwrap() error { return e.cause }

// PostCommand saves the cache under every save level, when the command's outcome asks for it.
func PostCommand(ctx context.Context, inv *Invocation) error {
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
		inv.annotate(ctx, []summaryRow{{op: "save", result: "not saved: " + sc.noSave}})
		return nil
	}
	if reason := inv.skipForExitStatus(); reason != "" {
		inv.Log.Group("Not saving cache")
		inv.Log.Infof("%s", reason)
		inv.annotate(ctx, []summaryRow{{op: "save", result: "not saved: " + reason}})
		return nil
	}
	st, ok := inv.readState()
	if ok {
		// The command ran between the hooks as the same user and could rewrite the state file:
		// save only under keys this build may write.
		if err := inv.checkSaveKeys(ctx, st.SaveKeys, sc.write); err != nil {
			inv.Log.Warnf("ignoring the state from pre-command: %v", err)
			ok = false
		}
	}
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
	var rows []summaryRow
	for _, k := range st.SaveKeys {
		switch {
		case st.Hit != cache.Exact:
		case st.LookedUp:
			// Even with force: the paths hold what the command made, not what the key describes.
			// The command was told of an exact hit it never got: what lies in the paths is not
			// known to be what the key describes (the command likely skipped its work).
			inv.Log.Group("Saving cache (%s level)", k.Level)
			inv.Log.Infof("Lookup-only found an exact hit of %s and restored nothing: nothing to save", st.HitKey)
			rows = append(rows, skippedRow(k, "lookup-only found an exact hit"))
			continue
		case c.Cache.Force:
		case st.HitKey == k.Name:
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
	inv.Log.Infof("Saving to %s: %s", namespaceName(keys[0].Namespace), sc.why)
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
