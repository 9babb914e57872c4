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
	Parts  int   // 0 for a single PutObject
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
	in := &awss3.PutObjectInput{
		Bucket:        &s.bucket,
		Key:           &key,
		Body:          bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))),
		ContentType:   aws.String("application/octet-stream"),
	}
	s.applyPutSettings(&in.StorageClass, &in.ServerSideEncryption, &in.SSEKMSKeyId)
	if !o.Overwrite {
		in.IfNoneMatch = aws.String("*")
	}
	_, err := s.client.PutObject(ctx, in)
	res := Result{Size: int64(len(body))}
	switch {
	case err == nil:
		res.Stored = true
		return res, nil
	case isPreconditionFailed(err):
		return res, nil
	case isConflict(err):
		return res, fmt.Errorf("upload %s: %w: %w", key, ErrConflict, err)
	}
	return res, fmt.Errorf("upload %s: %w", key, err)
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
		// Never leave parts behind, even when ctx is cancelled (SIGTERM).
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
		defer cancel()
		if _, aerr := s.client.AbortMultipartUpload(actx, &awss3.AbortMultipartUploadInput{
			Bucket: &s.bucket, Key: &key, UploadId: uploadID,
		}); aerr != nil {
			err = errors.Join(err, fmt.Errorf("abort multipart upload of %s: %w", key, aerr))
		}
	}()

	var (
		mu    sync.Mutex
		parts []types.CompletedPart
	)
	pool := make(chan []byte, s.concurrency)
	allocated := 1 // first
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.concurrency)
	uploadPart := func(body []byte, num int32) error {
		defer func() { pool <- body[:cap(body)] }()
		out, err := s.client.UploadPart(gctx, &awss3.UploadPartInput{
			Bucket: &s.bucket, Key: &key, UploadId: uploadID, PartNumber: &num,
			Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body))),
		})
		if err != nil {
			return fmt.Errorf("upload part %d: %w", num, err)
		}
		mu.Lock()
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: &num})
		mu.Unlock()
		return nil
	}

	buf, n := first, len(first)
	for part := 1; n > 0; part++ { // n == 0: the stream ended at a part boundary
		if part > maxParts {
			_ = g.Wait()
			return res, fmt.Errorf("upload %s: archive needs more than %d parts", key, maxParts)
		}
		body, num := buf[:n], int32(part)
		res.Size += int64(n)
		res.Parts = part
		g.Go(func() error { return uploadPart(body, num) })
		if n < len(buf) {
			break // a short part is the last one
		}

		// Next buffer: a new one while under the concurrency budget, else a recycled one.
		size := partSizeFor(s.partSize, part+1)
		if allocated < s.concurrency {
			buf, allocated = make([]byte, size), allocated+1
		} else {
			select {
			case buf = <-pool:
			case <-gctx.Done():
				return res, s.partsFailed(key, g)
			}
		}
		if int64(cap(buf)) < size {
			buf = make([]byte, size)
		}
		buf = buf[:size]
		var rerr error
		n, rerr = io.ReadFull(r, buf)
		if rerr != nil && !errors.Is(rerr, io.EOF) && !errors.Is(rerr, io.ErrUnexpectedEOF) {
			_ = g.Wait()
			return res, fmt.Errorf("upload %s: read: %w", key, rerr)
		}
	}
	if err := g.Wait(); err != nil {
		return res, fmt.Errorf("upload %s: %w", key, err)
	}
	slices.SortFunc(parts, func(a, b types.CompletedPart) int { return int(*a.PartNumber - *b.PartNumber) })
	cin := &awss3.CompleteMultipartUploadInput{
		Bucket: &s.bucket, Key: &key, UploadId: uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	}
	if !o.Overwrite {
		cin.IfNoneMatch = aws.String("*")
	}
	_, err = s.client.CompleteMultipartUpload(ctx, cin)
	switch {
	case err == nil:
		completed, res.Stored = true, true
		return res, nil
	case isPreconditionFailed(err):
		return res, nil // another job won; the deferred abort removes our parts
	case isConflict(err):
		return res, fmt.Errorf("upload %s: %w: %w", key, ErrConflict, err)
	}
	return res, fmt.Errorf("upload %s: complete multipart upload: %w", key, err)
}

// partsFailed waits for the part uploads in flight and returns the first failure.
func (s *Store) partsFailed(key string, g *errgroup.Group) error {
	if err := g.Wait(); err != nil {
		return fmt.Errorf("upload %s: %w", key, err)
	}
	return fmt.Errorf("upload %s: %w", key, context.Canceled)
}

func isPreconditionFailed(err error) bool {
	return status(err) == http.StatusPreconditionFailed || code(err) == "PreconditionFailed"
}

func isConflict(err error) bool {
	return code(err) == "ConditionalRequestConflict" ||
		(status(err) == http.StatusConflict && code(err) != "OperationAborted")
}
