package plugin

// Why a file: last-use tracking. A restore leaves a marker that s3-cache gc reads, at most once an
// hour per key on this agent, never in the restore's way (docs/design.md#last-use-tracking-and-gc).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/atomicfile"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/buildkite"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cachekey"
)

// usageWait bounds how long a hook waits, at its end, for its marker to be written.
const usageWait = time.Second

// marker is what usage needs of the store; *s3.Store implements it.
type marker interface {
	Mark(ctx context.Context, key string) error
}

// usage writes the last-use markers of one hook run.
type usage struct {
	ctx    context.Context // the hook's: a cancelled job stops its marker too
	store  marker
	prefix string // the key prefix
	scope  string // endpoint and bucket, so that stamps of two buckets never meet
	dir    string // the private state directory, where the stamps live
	log    *buildkite.Log
	now    func() time.Time
	wg     sync.WaitGroup
}

// used starts writing the marker of key for this hour, unless this agent has written it already
// (its stamp in the state directory says so). It returns at once.
func (u *usage) used(key string) {
	at := u.now()
	hour := at.UTC().Format("2006010215")
	sum := sha256.Sum256([]byte(u.scope + "\x00" + key))
	// In the state directory, so that the sweep of stale state files removes stamps a day old.
	stamp := filepath.Join(u.dir, "used-"+hex.EncodeToString(sum[:16]))
	if privateDir(u.dir, false) == nil {
		if b, err := os.ReadFile(stamp); err == nil && string(b) == hour {
			return
		}
	}
	u.wg.Go(func() {
		if err := u.store.Mark(u.ctx, cachekey.UsedMarker(u.prefix, key, at)); err != nil {
			// Never a warning: a build must not fail, nor its log alarm, for a statistic.
			if u.ctx.Err() == nil {
				u.log.Infof("Could not record the use of %s for s3-cache gc: %v", key, err)
			}
			return
		}
		if privateDir(u.dir, true) == nil {
			_ = atomicfile.Write(stamp, []byte(hour), 0o600)
		}
	})
}

// wait waits for the markers started, for at most usageWait: an unfinished PUT is abandoned with
// the process, which leaves at worst no marker.
func (u *usage) wait() {
	if u == nil {
		return
	}
	done := make(chan struct{})
	go func() { u.wg.Wait(); close(done) }()
	t := time.NewTimer(usageWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		u.log.Infof("Not waiting longer than %s to record the cache's use for s3-cache gc", usageWait)
	}
}
