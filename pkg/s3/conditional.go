package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/atomicfile"
)

// Conditional says whether saves send If-None-Match: * (the conditional-writes key; see
// docs/design.md#conditional-writes-and-the-probe).
type Conditional string

// The conditional-writes modes.
const (
	ConditionalAuto Conditional = "auto" // probe the endpoint once a day, and trust the verdict
	ConditionalOn   Conditional = "on"   // always send it
	ConditionalOff  Conditional = "off"  // never send it: HEAD, then write
)

// verdictTTL is how long a probe's verdict is trusted.
const verdictTTL = 24 * time.Hour

// Verdict is what an endpoint honours. Where it does not, a save checks with HEAD and then
// writes: a narrow race that restores survive, because they are pinned to one ETag and verify
// the archive's checksum.
type Verdict struct {
	Put       bool      `json:"put"`       // If-None-Match on PutObject
	Multipart bool      `json:"multipart"` // If-None-Match on CompleteMultipartUpload
	CheckedAt time.Time `json:"checked_at"`
}

// verdict settles what to trust for this store, once; in auto mode it probes the endpoint or
// reads the agent's cached verdict.
func (s *Store) verdict(ctx context.Context) {
	s.verdictOnce.Do(func() {
		switch s.opts.ConditionalWrites {
		case ConditionalOff:
			s.conditional = Verdict{}
		case ConditionalOn:
			s.conditional = Verdict{Put: true, Multipart: true}
		default:
			s.conditional = s.autoVerdict(ctx)
		}
	})
}

func (s *Store) autoVerdict(ctx context.Context) Verdict {
	path := s.verdictPath()
	if doc, err := os.ReadFile(path); err == nil {
		var v Verdict
		if json.Unmarshal(doc, &v) == nil && time.Since(v.CheckedAt) < verdictTTL {
			return v
		}
	}
	v, err := s.Probe(ctx)
	if err != nil {
		// Not known: send the header (a 501 answer is handled where it happens) but do not cache.
		s.warnf("could not probe %s for conditional writes (%v); sending them anyway", s.endpoint, err)
		return Verdict{Put: true, Multipart: true}
	}
	if !v.Put || !v.Multipart {
		s.warnf("%s does not honour conditional writes (If-None-Match: * on PutObject: %t, on CompleteMultipartUpload: %t); "+
			"saves check with HEAD before writing instead (set conditional-writes: off to skip this probe)",
			s.endpoint, v.Put, v.Multipart)
	}
	if doc, err := json.Marshal(v); err == nil && path != "" {
		_ = atomicfile.Write(path, doc, 0o644)
	}
	return v
}

// Probe finds out whether the endpoint honours If-None-Match: * by creating probe objects twice
// under <prefix>/.s3-cache-probe/: the second conditional create must fail, for a single PUT and
// for a multipart Complete. The probe objects are deleted.
func (s *Store) Probe(ctx context.Context) (Verdict, error) {
	v := Verdict{CheckedAt: time.Now()}
	base := s.opts.ProbePrefix + ".s3-cache-probe/" + randomHex(8)
	put, mp := base+"-put", base+"-multipart"
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
		defer cancel()
		_ = s.Delete(dctx, put)
		_ = s.Delete(dctx, mp)
	}()

	createPut := func() error {
		_, err := s.client.PutObject(ctx, &awss3.PutObjectInput{Bucket: &s.opts.Bucket, Key: &put,
			Body: bytes.NewReader([]byte("probe")), IfNoneMatch: aws.String("*")})
		return err
	}
	var err error
	if v.Put, err = probeTwice(createPut); err != nil {
		return v, fmt.Errorf("probe PutObject: %w", err)
	}
	if v.Multipart, err = probeTwice(func() error { return s.probeMultipart(ctx, mp) }); err != nil {
		return v, fmt.Errorf("probe multipart upload: %w", err)
	}
	return v, nil
}

// probeTwice creates an object twice with If-None-Match: * and tells whether the second create
// was refused, as it must be where the header is honoured. A 501 means it is not implemented.
func probeTwice(create func() error) (honoured bool, err error) {
	if err := create(); err != nil {
		if status(err) == http.StatusNotImplemented {
			return false, nil
		}
		return false, err
	}
	switch err := create(); {
	case err == nil:
		return false, nil // the second create overwrote the first: the header was ignored
	case isPreconditionFailed(err):
		return true, nil
	case status(err) == http.StatusNotImplemented:
		return false, nil
	default:
		return false, err
	}
}

// probeMultipart creates key with a one-part conditional multipart upload.
func (s *Store) probeMultipart(ctx context.Context, key string) (err error) {
	created, err := s.client.CreateMultipartUpload(ctx, &awss3.CreateMultipartUploadInput{Bucket: &s.opts.Bucket, Key: &key})
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			_ = s.abort(ctx, key, created.UploadId)
		}
	}()
	part, err := s.client.UploadPart(ctx, &awss3.UploadPartInput{Bucket: &s.opts.Bucket, Key: &key, UploadId: created.UploadId,
		PartNumber: aws.Int32(1), Body: bytes.NewReader([]byte("probe"))})
	if err != nil {
		return err
	}
	_, err = s.client.CompleteMultipartUpload(ctx, &awss3.CompleteMultipartUploadInput{Bucket: &s.opts.Bucket, Key: &key,
		UploadId: created.UploadId, IfNoneMatch: aws.String("*"),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{{ETag: part.ETag, PartNumber: aws.Int32(1)}}}})
	done = err == nil
	return err
}

// notImplemented records that the endpoint answered 501 to a conditional write, and says so once.
func (s *Store) notImplemented(multipart bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if multipart {
		s.conditional.Multipart = false
	} else {
		s.conditional.Put = false
	}
	if !s.warned501 {
		s.warned501 = true
		s.warnf("%s answered 501 Not Implemented to If-None-Match: *; saving with HEAD then a plain write instead", s.endpoint)
	}
}

// conditionalFor says whether to send If-None-Match on a PutObject or a multipart Complete.
func (s *Store) conditionalFor(ctx context.Context, multipart bool) bool {
	s.verdict(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if multipart {
		return s.conditional.Multipart
	}
	return s.conditional.Put
}

// verdictPath is the agent-wide cache of verdicts, one file per endpoint and bucket.
func (s *Store) verdictPath() string {
	dir := s.opts.VerdictDir
	if dir == "" {
		d, err := os.UserCacheDir()
		if err != nil {
			return ""
		}
		dir = filepath.Join(d, "s3-cache", "conditional-writes")
	}
	sum := sha256.Sum256([]byte(s.endpoint + "\x00" + s.opts.Bucket))
	return filepath.Join(dir, hex.EncodeToString(sum[:12])+".json")
}

func (s *Store) warnf(format string, args ...any) {
	if s.opts.Log != nil {
		s.opts.Log.Warnf(format, args...)
	}
}

func (s *Store) infof(format string, args ...any) {
	if s.opts.Log != nil {
		s.opts.Log.Infof(format, args...)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
