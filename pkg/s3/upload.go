package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"
)

// PutOptions say how an object is created.
type PutOptions struct {
	// Overwrite replaces an existing object (last writer wins). Without it the create is
	// conditional (If-None-Match: *) and an existing object is left alone.
	Overwrite bool
}

// Result describes a finished upload.
type Result struct {
	Stored bool  // false: another writer created the object first, and it was left alone
	Size   int64 // bytes read from the stream
}

// abortTimeout bounds the clean-up of a failed multipart upload, which runs even after the
// caller's context is cancelled.
const abortTimeout = 30 * time.Second

// Upload streams r to key. See the package documentation for the algorithm.
func (s *Store) Upload(ctx context.Context, key string, r io.Reader, o PutOptions) (Result, error) {
	first := make([]byte, s.partSize)
	n, err := io.ReadFull(r, first)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return s.putObject(ctx, key, first[:n], o)
	case err != nil:
		return Result{}, fmt.Errorf("upload %s: read: %w", key, err)
	}
	return s.multipart(ctx, key, first, r, o)
}

func (s *Store) putObject(ctx context.Context, key string, body []byte, o PutOptions) (Result, error) {
	res := Result{Size: int64(len(body))}
	conditional := !o.Overwrite && s.conditionalFor(ctx, false)
	if !o.Overwrite && !conditional {
		if exists, err := s.exists(ctx, key); err != nil || exists {
			return res, err
		}
	}
	in := &awss3.PutObjectInput{
		Bucket:        &s.bucket,
		Key:           &key,
		ContentLength: aws.Int64(int64(len(body))),
		ContentType:   aws.String("application/octet-stream"),
	}
	s.applyPutSettings(&in.StorageClass, &in.ServerSideEncryption, &in.SSEKMSKeyId)
	if conditional {
		in.IfNoneMatch = aws.String("*")
	}
	err := s.withStallRetry(ctx, func(ctx context.Context, w *watchdog) error {
		in.Body = &progressReader{r: bytes.NewReader(body), w: w}
		_, err := s.client.PutObject(ctx, in)
		return err
	})
	switch {
	case err == nil:
		res.Stored = true
		return res, nil
	case conditional && isPreconditionFailed(err):
		return res, nil
	case conditional && status(err) == http.StatusNotImplemented:
		s.notImplemented(false)
		return s.putObject(ctx, key, body, o)
	case isConflict(err):
		return res, fmt.Errorf("upload %s: %w: %w", key, ErrConflict, err)
	}
	return res, fmt.Errorf("upload %s: %w", key, err)
}

// exists is the check of endpoints without conditional writes.
func (s *Store) exists(ctx context.Context, key string) (bool, error) {
	_, err := s.Head(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (s *Store) applyPutSettings(class *types.StorageClass, sse *types.ServerSideEncryption, kms **string) {
	if s.opts.StorageClass != "" {
		*class = types.StorageClass(s.opts.StorageClass)
	}
	if s.opts.SSE != "" {
		*sse = types.ServerSideEncryption(s.opts.SSE)
	}
	if s.opts.SSEKMSKeyID != "" {
		*kms = aws.String(s.opts.SSEKMSKeyID)
	}
}

// partSizeFor grows the part size so that 10,000 parts hold far more than S3's 5 TiB limit:
// the base size doubles every 1,000 parts.
func partSizeFor(base int64, part int) int64 {
	size := base << ((part - 1) / 1000)
	return min(max(size, minPartSize), maxPartSize)
}

// multipart uploads first and the rest of r as a multipart upload. Parts are uploaded by up to
// s.concurrency goroutines; buffers are recycled, so memory stays at concurrency × part size.
func (s *Store) multipart(ctx context.Context, key string, first []byte, r io.Reader, o PutOptions) (res Result, err error) {
	in := &awss3.CreateMultipartUploadInput{Bucket: &s.bucket, Key: &key, ContentType: aws.String("application/octet-stream")}
	s.applyPutSettings(&in.StorageClass, &in.ServerSideEncryption, &in.SSEKMSKeyId)
	created, err := s.client.CreateMultipartUpload(ctx, in)
	if err != nil {
		return res, fmt.Errorf("upload %s: create multipart upload: %w", key, err)
	}
	uploadID := created.UploadId
	completed := false
	defer func() {
		if completed {
			return
		}
		if aerr := s.abort(ctx, key, uploadID); aerr != nil {
			err = errors.Join(err, aerr)
		}
	}()

	parts, size, err := s.uploadParts(ctx, key, uploadID, first, r)
	res.Size = size
	if err != nil {
		return res, fmt.Errorf("upload %s: %w", key, err)
	}
	completed, res.Stored, err = s.complete(ctx, key, uploadID, parts, o)
	return res, err
}

// abort aborts a multipart upload that will not be completed, so that no parts are left behind.
// It runs even when ctx is cancelled (SIGTERM), and keeps trying for up to abortTimeout, since
// the SDK's few attempts can all fail on a bad link; a refusal (4xx) is final. NoSuchUpload
// means the upload is gone already: an earlier attempt whose answer was lost aborted it.
func (s *Store) abort(ctx context.Context, key string, uploadID *string) error {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		_, err := s.client.AbortMultipartUpload(actx, &awss3.AbortMultipartUploadInput{
			Bucket: &s.bucket, Key: &key, UploadId: uploadID,
		})
		if err == nil || code(err) == "NoSuchUpload" {
			return nil
		}
		if st := status(err); st >= 400 && st < 500 && st != http.StatusRequestTimeout && st != http.StatusTooManyRequests {
			return fmt.Errorf("abort multipart upload of %s: %w", key, err) // refused: trying again will not help
		}
		select {
		case <-actx.Done():
			return fmt.Errorf("abort multipart upload of %s: %w", key, err)
		case <-time.After(time.Duration(attempt) * 250 * time.Millisecond):
		}
	}
}

// uploadParts reads r to its end, uploading parts concurrently; it returns them in order.
func (s *Store) uploadParts(ctx context.Context, key string, uploadID *string, first []byte, r io.Reader) ([]types.CompletedPart, int64, error) {
	var (
		mu    sync.Mutex
		parts []types.CompletedPart
		size  int64
	)
	pool := make(chan []byte, s.concurrency)
	allocated := 1 // first
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.concurrency)
	uploadPart := func(body []byte, num int32) error {
		defer func() { pool <- body[:cap(body)] }()
		var etag *string
		err := s.withStallRetry(gctx, func(ctx context.Context, w *watchdog) error {
			out, err := s.client.UploadPart(ctx, &awss3.UploadPartInput{
				Bucket: &s.bucket, Key: &key, UploadId: uploadID, PartNumber: &num,
				Body: &progressReader{r: bytes.NewReader(body), w: w}, ContentLength: aws.Int64(int64(len(body))),
			})
			if err == nil {
				etag = out.ETag
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("upload part %d: %w", num, err)
		}
		mu.Lock()
		parts = append(parts, types.CompletedPart{ETag: etag, PartNumber: &num})
		mu.Unlock()
		return nil
	}

	buf, n := first, len(first)
	for part := 1; n > 0; part++ { // n == 0: the stream ended at a part boundary
		if part > maxParts {
			_ = g.Wait()
			return nil, size, fmt.Errorf("archive needs more than %d parts", maxParts)
		}
		body, num := buf[:n], int32(part)
		size += int64(n)
		g.Go(func() error { return uploadPart(body, num) })
		if n < len(buf) {
			break // a short part is the last one
		}

		// Next buffer: a new one while under the concurrency budget, else a recycled one.
		next := partSizeFor(s.partSize, part+1)
		if allocated < s.concurrency {
			buf, allocated = make([]byte, next), allocated+1
		} else {
			select {
			case buf = <-pool:
			case <-gctx.Done():
				if err := g.Wait(); err != nil {
					return nil, size, err
				}
				return nil, size, ctx.Err()
			}
		}
		if int64(cap(buf)) < next {
			buf = make([]byte, next)
		}
		buf = buf[:next]
		var rerr error
		n, rerr = io.ReadFull(r, buf)
		if rerr != nil && !errors.Is(rerr, io.EOF) && !errors.Is(rerr, io.ErrUnexpectedEOF) {
			_ = g.Wait()
			return nil, size, fmt.Errorf("read: %w", rerr)
		}
	}
	if err := g.Wait(); err != nil {
		return nil, size, err
	}
	slices.SortFunc(parts, func(a, b types.CompletedPart) int { return int(*a.PartNumber - *b.PartNumber) })
	return parts, size, nil
}

// complete completes the upload, conditionally unless o.Overwrite. It reports whether the
// upload was completed (else the caller aborts it) and whether it stored the object.
func (s *Store) complete(ctx context.Context, key string, uploadID *string, parts []types.CompletedPart, o PutOptions) (completed, stored bool, err error) {
	conditional := !o.Overwrite && s.conditionalFor(ctx, true)
	if !o.Overwrite && !conditional {
		if exists, err := s.exists(ctx, key); err != nil || exists {
			return false, false, err
		}
	}
	in := &awss3.CompleteMultipartUploadInput{
		Bucket: &s.bucket, Key: &key, UploadId: uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	}
	if conditional {
		in.IfNoneMatch = aws.String("*")
	}
	_, err = s.client.CompleteMultipartUpload(ctx, in)
	switch {
	case err == nil:
		return true, true, nil
	case conditional && isPreconditionFailed(err):
		return false, false, nil // another job won; the caller aborts our upload
	case conditional && status(err) == http.StatusNotImplemented:
		s.notImplemented(true)
		return s.complete(ctx, key, uploadID, parts, o)
	case isConflict(err):
		return false, false, fmt.Errorf("upload %s: %w: %w", key, ErrConflict, err)
	}
	return false, false, fmt.Errorf("upload %s: complete multipart upload: %w", key, err)
}

func isPreconditionFailed(err error) bool {
	return status(err) == http.StatusPreconditionFailed || code(err) == "PreconditionFailed"
}

func isConflict(err error) bool {
	return code(err) == "ConditionalRequestConflict" ||
		(status(err) == http.StatusConflict && code(err) != "OperationAborted")
}
