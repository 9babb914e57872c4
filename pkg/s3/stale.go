package s3

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// staleAfter is the age past which an incomplete multipart upload is abandoned: a job killed
// with its machine cannot abort its own, and no live save of a cache takes a day.
const staleAfter = 24 * time.Hour

// abortStaleAsync aborts, in the background, the stale multipart uploads of keys; the returned
// function waits for that to end.
func (s *Store) abortStaleAsync(ctx context.Context, keys []string) (wait func()) {
	var wg sync.WaitGroup
	for _, key := range keys {
		wg.Go(func() { s.abortStale(ctx, key) })
	}
	return wg.Wait
}

// abortStale aborts the incomplete multipart uploads of exactly key initiated more than
// staleAfter ago. It is best effort: a failure is logged (or, for a policy without
// s3:ListBucketMultipartUploads, ignored), never returned, and the lifecycle rule
// AbortIncompleteMultipartUpload remains the second line of defence.
func (s *Store) abortStale(ctx context.Context, key string) {
	cutoff := s.now().Add(-staleAfter)
	aborted := 0
	defer func() {
		if aborted > 0 {
			s.infof("Aborted %d incomplete multipart upload(s) of %s started over a day ago", aborted, key)
		}
	}()
	ups, err := s.Uploads(ctx, key)
	if err != nil && ctx.Err() == nil && status(err) != http.StatusForbidden {
		// A 403 is a policy without the optional s3:ListBucketMultipartUploads: not news.
		s.infof("Could not look for stale multipart uploads of %s: %v", key, err)
	}
	for _, u := range ups { // what was listed before any error
		if u.Key != key || u.Initiated.IsZero() || !u.Initiated.Before(cutoff) {
			continue
		}
		if err := s.AbortUpload(ctx, u); err != nil {
			if ctx.Err() == nil {
				s.infof("Could not abort stale multipart upload %s of %s: %v", u.ID, key, err)
			}
			continue
		}
		aborted++
	}
}
