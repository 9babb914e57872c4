package s3

import (
	"bytes"
	"cmp"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// PutOptions say how an object is created.
type PutOptions struct {
	// Overwrite replaces an existing object (last writer wins). Without it the create is
	// conditional (If-None-Match: *) and an existing object is left alone.
	Overwrite bool
}

// Result describes a finished upload.
type Result struct {
	Stored bool   // false: another writer created the object first, and it was left alone
	Size   int64  // bytes read from the stream
	ETag   string // of the object stored, as Head gives it; "" when not Stored or not known
}

// abortTimeout bounds the clean-up of a failed multipart upload, which runs even after the
// caller's context is cancelled.
const abortTimeout = 30 * time.Second

// abortAttempts bounds the calls of one abort (see abort).
const abortAttempts = 5

// Upload streams r to key. See the package documentation for the algorithm.
func (s *Store) Upload(ctx context.Context, key string, r io.Reader, o PutOptions) (Result, error) {
	res, errs := s.UploadEach(ctx, []string{key}, r, o)
	return res[0], errs[0]
}

// UploadEach streams r once to every key: each part is read and buffered once and uploaded to
// every key, so a save at several levels needs no more memory than a save at one. A key whose
// upload fails is dropped and the others go on; errs[i] is keys[i]'s error.
func (s *Store) UploadEach(ctx context.Context, keys []string, r io.Reader, o PutOptions) (res []Result, errs []error) {
	res, errs = make([]Result, len(keys)), make([]error, len(keys))
	stale := s.abortStaleAsync(ctx, keys)
	defer stale()
	first := make([]byte, s.opts.PartSize)
	n, err := io.ReadFull(r, first)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		each(len(keys), func(i int) { res[i], errs[i] = s.putObject(ctx, keys[i], first[:n], o) })
	case err != nil:
		for i, key := range keys {
			errs[i] = fmt.Errorf("upload %s: read: %w", key, err)
		}
	default:
		s.multipart(ctx, keys, first, r, o, res, errs)
	}
	return res, errs
}

// each runs f(0) … f(n-1) concurrently and waits for them.
func each(n int, f func(i int)) {
	if n == 1 {
		f(0)
		return
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { f(i) })
	}
	wg.Wait()
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
		Bucket:        &s.opts.Bucket,
		Key:           &key,
		ContentLength: aws.Int64(int64(len(body))),
		ContentType:   aws.String("application/octet-stream"),
	}
	s.applyPutSettings(&in.StorageClass, &in.ServerSideEncryption, &in.SSEKMSKeyId)
	if conditional {
		in.IfNoneMatch = aws.String("*")
	}
	err := s.withStallAttempts(ctx, func(ctx context.Context, w *watchdog) error {
		in.Body = &progressReader{r: bytes.NewReader(body), w: w}
		out, err := s.client.PutObject(ctx, in)
		if err == nil {
			res.ETag = aws.ToString(out.ETag)
		}
		return err
	})
	etag := func() string { sum := md5.Sum(body); return hex.EncodeToString(sum[:]) }
	switch {
	case err == nil:
		res.Stored = true
		return res, nil
	case conditional && isPreconditionFailed(err):
		// Another job's object, or ours: the SDK retries a PUT whose response was lost, and the
		// retry finds the object the first attempt created.
		if res.Stored = s.landed(ctx, key, etag()); res.Stored {
			res.ETag = quoted(etag())
		}
		return res, nil
	case conditional && status(err) == http.StatusNotImplemented:
		s.notImplemented(false)
		return s.putObject(ctx, key, body, o)
	case isConflict(err):
		return res, fmt.Errorf("upload %s: %w: %w", key, ErrConflict, err)
	}
	// An answer cut short (a 200 whose body broke) or retries that ran out may follow a write
	// that landed: report what is there, not what the client heard.
	if s.landed(ctx, key, etag()) {
		res.Stored, res.ETag = true, quoted(etag())
		return res, nil
	}
	return res, fmt.Errorf("upload %s: %w", key, err)
}

// landed tells whether the object at key has the ETag etag (without quotes): whether what a
// request answered with an error had in fact been stored by an earlier attempt of it.
func (s *Store) landed(ctx context.Context, key, etag string) bool {
	if etag == "" {
		return false
	}
	obj, err := s.Head(ctx, key)
	return err == nil && strings.Trim(obj.ETag, `"`) == etag
}

// quoted is an ETag computed here (an MD5 in hex) in the form S3 gives it.
func quoted(etag string) string { return `"` + etag + `"` }

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

// partLimits are the bounds of a multipart upload: S3's in a Store, smaller in fast tests so
// that the growth and the count limit are reached in kilobytes.
type partLimits struct {
	minSize, maxSize int64 // of every part but the last
	maxParts         int
}

// partSizeFor grows the part size so that maxParts parts hold far more than S3's 5 TiB limit
// at the default part size: the base size doubles every maxParts/10 (1,000) parts.
func (l partLimits) partSizeFor(base int64, part int) int64 {
	size := base << ((part - 1) / (l.maxParts / 10))
	return min(max(size, l.minSize), l.maxSize)
}

// upload is one key's multipart upload within UploadEach.
type upload struct {
	key      string
	id       *string
	mu       sync.Mutex
	parts    []types.CompletedPart
	err      error // the first failure; the upload takes no more parts
	complete bool  // completed by its own Complete: nothing to abort
}

func (u *upload) failed() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

func (u *upload) fail(err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.err == nil {
		u.err = err
	}
}

// multipart uploads first and the rest of r as one multipart upload per key, recording each
// key's outcome in res and errs.
func (s *Store) multipart(ctx context.Context, keys []string, first []byte, r io.Reader, o PutOptions, res []Result, errs []error) {
	uploads := make([]*upload, len(keys))
	each(len(keys), func(i int) {
		u := &upload{key: keys[i]}
		uploads[i] = u
		in := &awss3.CreateMultipartUploadInput{Bucket: &s.opts.Bucket, Key: &u.key, ContentType: aws.String("application/octet-stream")}
		s.applyPutSettings(&in.StorageClass, &in.ServerSideEncryption, &in.SSEKMSKeyId)
		created, err := s.client.CreateMultipartUpload(ctx, in)
		if err != nil {
			u.fail(fmt.Errorf("create multipart upload: %w", err))
			return
		}
		u.id = created.UploadId
	})
	defer func() {
		// Never leave parts behind, even when ctx is cancelled (SIGTERM): see abort.
		each(len(uploads), func(i int) {
			u := uploads[i]
			if u.id == nil || u.complete {
				return
			}
			err := s.abort(ctx, u.key, u.id)
			switch {
			case err == nil:
			case res[i].Stored: // the object is there: the upload is only a leftover
				s.infof("Could not abort the multipart upload of %s (the stale-upload sweep or the bucket's lifecycle rule will): %v", u.key, err)
			default:
				errs[i] = errors.Join(errs[i], err)
			}
		})
	}()

	size, err := s.uploadParts(ctx, uploads, first, r)
	each(len(uploads), func(i int) {
		u := uploads[i]
		res[i].Size = size
		if uerr := u.failed(); uerr != nil || err != nil {
			errs[i] = fmt.Errorf("upload %s: %w", u.key, cmp.Or(uerr, err))
			return
		}
		slices.SortFunc(u.parts, func(a, b types.CompletedPart) int { return int(*a.PartNumber - *b.PartNumber) })
		u.complete, res[i].Stored, res[i].ETag, errs[i] = s.complete(ctx, u.key, u.id, u.parts, o)
	})
}

// abort aborts a multipart upload that will not be completed, so that no parts are left behind.
// It runs even when ctx is cancelled (SIGTERM), and makes up to abortAttempts calls (each with
// the SDK's own retries) within abortTimeout, since the SDK's few tries can all fail on a bad
// link; the bound keeps a job whose endpoint died from waiting long. A refusal (4xx) is final.
// NoSuchUpload means the upload is gone already: an earlier attempt whose answer was lost
// aborted it.
func (s *Store) abort(ctx context.Context, key string, uploadID *string) error {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		_, err := s.client.AbortMultipartUpload(actx, &awss3.AbortMultipartUploadInput{
			Bucket: &s.opts.Bucket, Key: &key, UploadId: uploadID,
		})
		if err == nil || code(err) == "NoSuchUpload" {
			return nil
		}
		if st := status(err); st >= 400 && st < 500 && st != http.StatusRequestTimeout && st != http.StatusTooManyRequests {
			return fmt.Errorf("abort multipart upload of %s: %w", key, err) // refused: trying again will not help
		}
		if attempt == abortAttempts {
			return fmt.Errorf("abort multipart upload of %s: %w", key, err)
		}
		if s.wait(actx, time.Duration(attempt)*250*time.Millisecond) != nil {
			return fmt.Errorf("abort multipart upload of %s: %w", key, err)
		}
	}
}

// errNoUpload stops reading when every key's upload has failed.
var errNoUpload = errors.New("no upload left")

// uploadParts reads r to its end and uploads every part to every upload that has not failed,
// in buffers from partBuffers.
func (s *Store) uploadParts(ctx context.Context, uploads []*upload, first []byte, r io.Reader) (int64, error) {
	var (
		wg   sync.WaitGroup
		size int64
		bufs = newPartBuffers(s.opts.Concurrency, s.opts.PartSize, first)
	)
	defer wg.Wait()
	live := func() bool {
		return slices.ContainsFunc(uploads, func(u *upload) bool { return u.failed() == nil })
	}
	buf, n := first, len(first)
	for part := 1; n > 0; part++ { // n == 0: the stream ended at a part boundary
		if part > s.limits.maxParts {
			return size, fmt.Errorf("archive needs more than %d parts", s.limits.maxParts)
		}
		if !live() {
			return size, errNoUpload
		}
		body, num := buf[:n], int32(part)
		size += int64(n)
		wg.Go(func() {
			s.uploadPart(ctx, uploads, body, num)
			bufs.put(body)
		})
		if n < len(buf) {
			break // a short part is the last one
		}
		var err error
		if buf, err = bufs.get(ctx, s.limits.partSizeFor(s.opts.PartSize, part+1)); err != nil {
			return size, err
		}
		var rerr error
		n, rerr = io.ReadFull(r, buf)
		if rerr != nil && !errors.Is(rerr, io.EOF) && !errors.Is(rerr, io.ErrUnexpectedEOF) {
			return size, fmt.Errorf("read: %w", rerr)
		}
	}
	return size, nil
}

// partBuffers hands out the buffers of an upload's parts. They are recycled, and count against
// one budget of concurrency × part size: parts grown past it (after part 1,000) leave fewer in
// flight, and one alone may exceed it. A buffer is added only while every one is busy: fresh
// memory costs a page fault per 4 KiB (on a virtual machine dearer than the copy that fills
// it), and an upload that keeps up with the archive needs two or three, not concurrency of them.
type partBuffers struct {
	max    int   // buffers at most
	budget int64 // bytes at most, but for a single buffer
	held   int64 // bytes of the buffers allocated and kept
	count  int   // and how many
	free   chan []byte
}

// newPartBuffers returns the buffers of an upload whose first part is in first.
func newPartBuffers(concurrency int, partSize int64, first []byte) *partBuffers {
	return &partBuffers{max: concurrency, budget: int64(concurrency) * partSize,
		held: int64(cap(first)), count: 1, free: make(chan []byte, concurrency)}
}

// get returns a buffer of size bytes: a recycled one if a part is done with one, else a new
// one within the limits, else the next one recycled. It fails only when ctx ends.
func (b *partBuffers) get(ctx context.Context, size int64) ([]byte, error) {
	for {
		select {
		case buf := <-b.free:
			if buf = b.fit(buf, size); buf != nil {
				return buf, nil
			}
			continue
		default:
		}
		if b.count < b.max && (b.held+size <= b.budget || b.held == 0) {
			b.held, b.count = b.held+size, b.count+1
			return make([]byte, size), nil
		}
		select {
		case buf := <-b.free:
			if buf = b.fit(buf, size); buf != nil {
				return buf, nil
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// fit returns buf as a buffer of size bytes, or nil (letting it go) if it is too small for
// the grown parts.
func (b *partBuffers) fit(buf []byte, size int64) []byte {
	if int64(cap(buf)) >= size {
		return buf[:size]
	}
	b.held, b.count = b.held-int64(cap(buf)), b.count-1
	return nil
}

// put gives back a buffer get returned (or the first part's), once its part is uploaded. It
// may be called from any goroutine; get and fit only from the reading one.
func (b *partBuffers) put(buf []byte) { b.free <- buf[:cap(buf)] }

// uploadPart uploads body as part num of every upload that has not failed.
func (s *Store) uploadPart(ctx context.Context, uploads []*upload, body []byte, num int32) {
	each(len(uploads), func(i int) {
		u := uploads[i]
		if u.failed() != nil {
			return
		}
		var etag *string
		err := s.withStallAttempts(ctx, func(ctx context.Context, w *watchdog) error {
			out, err := s.client.UploadPart(ctx, &awss3.UploadPartInput{
				Bucket: &s.opts.Bucket, Key: &u.key, UploadId: u.id, PartNumber: &num,
				Body: &progressReader{r: bytes.NewReader(body), w: w}, ContentLength: aws.Int64(int64(len(body))),
			})
			if err == nil {
				etag = out.ETag
			}
			return err
		})
		if err != nil {
			u.fail(fmt.Errorf("upload part %d: %w", num, err))
			return
		}
		u.mu.Lock()
		u.parts = append(u.parts, types.CompletedPart{ETag: etag, PartNumber: &num})
		u.mu.Unlock()
	})
}

// complete completes the upload, conditionally unless o.Overwrite. It reports whether the
// upload was completed (else the caller aborts it) and whether it stored the object.
func (s *Store) complete(ctx context.Context, key string, uploadID *string, parts []types.CompletedPart, o PutOptions) (completed, stored bool, etag string, err error) {
	conditional := !o.Overwrite && s.conditionalFor(ctx, true)
	if !o.Overwrite && !conditional {
		if exists, err := s.exists(ctx, key); err != nil || exists {
			return false, false, "", err
		}
	}
	in := &awss3.CompleteMultipartUploadInput{
		Bucket: &s.opts.Bucket, Key: &key, UploadId: uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	}
	if conditional {
		in.IfNoneMatch = aws.String("*")
	}
	out, err := s.client.CompleteMultipartUpload(ctx, in)
	switch {
	case err == nil:
		return true, true, aws.ToString(out.ETag), nil
	case (conditional && isPreconditionFailed(err)) || code(err) == "NoSuchUpload":
		// The SDK retries a Complete whose response was lost; the retry finds the object the
		// first attempt created, or the upload gone. What landed says whether it was ours, or
		// another job's of the very same bytes (a tree archives alike wherever it is saved):
		// then this upload is still open, so it is aborted all the same, which is a no-op
		// (NoSuchUpload) if it was the one that landed.
		if sum := multipartETag(parts); s.landed(ctx, key, sum) {
			return false, true, quoted(sum), nil
		}
		if code(err) == "NoSuchUpload" {
			break
		}
		return false, false, "", nil // another job won; the caller aborts our upload
	case conditional && status(err) == http.StatusNotImplemented:
		s.notImplemented(true)
		return s.complete(ctx, key, uploadID, parts, o)
	case isConflict(err):
		return false, false, "", fmt.Errorf("upload %s: %w: %w", key, ErrConflict, err)
	}
	// An answer cut short (a 200 whose body broke, which the SDK does not retry) or retries
	// that ran out may follow a Complete that landed: report what is there (and abort, as above).
	if sum := multipartETag(parts); s.landed(ctx, key, sum) {
		return false, true, quoted(sum), nil
	}
	return false, false, "", fmt.Errorf("upload %s: complete multipart upload: %w", key, err)
}

// multipartETag is the ETag S3 gives the object a multipart upload of parts creates: the MD5 of
// the parts' binary MD5s, then "-" and the number of parts. It is "" when a part's ETag is not
// an MD5 (as with some server-side encryption).
func multipartETag(parts []types.CompletedPart) string {
	h := md5.New()
	for _, p := range parts {
		sum, err := hex.DecodeString(strings.Trim(aws.ToString(p.ETag), `"`))
		if err != nil || len(sum) != md5.Size {
			return ""
		}
		h.Write(sum)
	}
	return fmt.Sprintf("%x-%d", h.Sum(nil), len(parts))
}

func isPreconditionFailed(err error) bool {
	return status(err) == http.StatusPreconditionFailed || code(err) == "PreconditionFailed"
}

func isConflict(err error) bool {
	return code(err) == "ConditionalRequestConflict" ||
		(status(err) == http.StatusConflict && code(err) != "OperationAborted")
}
