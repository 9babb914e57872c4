package s3

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
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
	in := &awss3.ListMultipartUploadsInput{Bucket: &s.opts.Bucket, Prefix: &key}
	for {
		out, err := s.client.ListMultipartUploads(ctx, in)
		if err != nil {
			// A 403 is a policy without the optional s3:ListBucketMultipartUploads: not news.
			if ctx.Err() == nil && status(err) != http.StatusForbidden {
				s.infof("Could not look for stale multipart uploads of %s: %v", key, err)
			}
			return
		}
		for _, u := range out.Uploads {
			if aws.ToString(u.Key) != key || u.Initiated == nil || !u.Initiated.Before(cutoff) {
				continue
			}
			if _, err := s.client.AbortMultipartUpload(ctx, &awss3.AbortMultipartUploadInput{
				Bucket: &s.opts.Bucket, Key: &key, UploadId: u.UploadId,
			}); err != nil {
				if ctx.Err() == nil {
					s.infof("Could not abort stale multipart upload %s of %s: %v", aws.ToString(u.UploadId), key, err)
				}
				continue
			}
			aborted++
		}
		if !aws.ToBool(out.IsTruncated) || aws.ToString(out.NextKeyMarker) == "" && aws.ToString(out.NextUploadIdMarker) == "" {
			return
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
}
