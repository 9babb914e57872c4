package s3

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"
)

// Errors a caller acts on. They are wrapped: test with errors.Is.
var (
	// ErrNotFound: there is no object at the key (or it expired mid-download).
	ErrNotFound = errors.New("object not found")
	// ErrChanged: the object was replaced while it was being read.
	ErrChanged = errors.New("object changed during download")
	// ErrConflict: S3 answered 409 ConditionalRequestConflict to a conditional create; the
	// whole upload must be retried from the start.
	ErrConflict = errors.New("conflicting conditional write")
)

// Defaults for the transfer tuning keys.
const (
	DefaultConcurrency = 8
	DefaultPartSize    = 8 << 20
	minPartSize        = 5 << 20
	maxPartSize        = 5 << 30
	maxParts           = 10000
)

// Logger receives what a person watching the job should see: warnings and information lines.
// *buildkite.Log is one; pkg/archive declares the same interface, so one log serves both.
type Logger interface {
	Infof(format string, args ...any)
	Warnf(format string, args ...any)
}

// Options configure a Store.
type Options struct {
	Bucket         string
	Region         string // "": the SDK chain's, else the bucket's (see New)
	Endpoint       string // custom endpoint (S3-compatible servers); AWS_ENDPOINT_URL works too
	Profile        string // shared config profile
	ForcePathStyle *bool  // nil: path-style exactly when a custom endpoint is used
	// Retries is the SDK's attempts per request (the first try included) at transport errors
	// and 5xx answers; 0 keeps the SDK's default. The Store's own loops on top of it (a range
	// of a download, a stalled request, an abort) count attempts too.
	Retries int

	Concurrency int   // parallel part uploads and range downloads; 0: DefaultConcurrency
	PartSize    int64 // first part size and download chunk size; 0: DefaultPartSize

	StorageClass string
	SSE          string // AES256 or aws:kms
	SSEKMSKeyID  string

	// ConditionalWrites: auto (default) probes the endpoint once a day, on trusts it, off never
	// sends If-None-Match and checks with HEAD instead.
	ConditionalWrites Conditional
	ProbePrefix       string // where probe objects go ("<prefix>/"), so IAM policies cover them
	VerdictDir        string // where probe verdicts are cached; "" is the user's cache directory

	// StallTimeout cancels and retries a request that makes no progress for this long
	// (0: DefaultStallTimeout).
	StallTimeout time.Duration

	// Log receives warnings worth a user's attention (an endpoint without conditional writes)
	// and lines worth logging (stale uploads aborted, restores pinned by ETag alone). May be nil.
	Log Logger

	// Credentials overrides the SDK's default chain (tests use static keys).
	Credentials aws.CredentialsProvider
}

// withDefaults resolves every unset tuning value, once, in New: the Store reads only the
// resolved options.
func (o Options) withDefaults() Options {
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.PartSize <= 0 {
		o.PartSize = DefaultPartSize
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = DefaultStallTimeout
	}
	if o.ConditionalWrites == "" {
		o.ConditionalWrites = ConditionalAuto
	}
	return o
}

// Store reads and writes cache objects in one bucket.
type Store struct {
	// client is the SDK's client (or a test's fake), in the bucket's region.
	client   *regional
	opts     Options // resolved: see withDefaults
	endpoint string  // the endpoint's name, for warnings and the verdict cache

	now         func() time.Time                                 // judges the age of multipart uploads; tests move it
	wait        func(ctx context.Context, d time.Duration) error // backs off between attempts; tests record it
	limits      partLimits                                       // S3's; tests shrink them
	verdictOnce sync.Once
	mu          sync.Mutex // guards conditional, warned501 and noVersionGets
	conditional Verdict
	warned501   bool
	// noVersionGets: a GET with versionId was denied (no s3:GetObjectVersion), so ranges are
	// pinned by If-Match alone.
	noVersionGets bool
}

// New builds a Store whose credentials, region and endpoint come from the SDK's default chain
// (environment, shared config and profile, web identity, ECS and EC2 metadata), overridden by o.
// When neither o nor the chain names a region, New asks the bucket for its region (one
// HeadBucket) and falls back to us-east-1 if the answer does not name one.
func New(ctx context.Context, o Options) (*Store, error) {
	o = o.withDefaults()
	var loads []func(*awsconfig.LoadOptions) error
	if o.Region != "" {
		loads = append(loads, awsconfig.WithRegion(o.Region))
	}
	if o.Profile != "" {
		loads = append(loads, awsconfig.WithSharedConfigProfile(o.Profile))
	}
	if o.Credentials != nil {
		loads = append(loads, awsconfig.WithCredentialsProvider(o.Credentials))
	}
	if o.Retries > 0 {
		loads = append(loads, awsconfig.WithRetryMaxAttempts(o.Retries))
	}
	// Ranged GETs of multipart objects cannot be checked against a whole-object checksum, and
	// many S3-compatible servers reject the SDK's default trailing checksums. Integrity is the
	// archive's own checksum, verified on restore.
	loads = append(loads,
		// The SDK's own log lines (a response body left unread when a ranged GET is cancelled)
		// would land in the build log; every failure that matters reaches the caller as an error.
		awsconfig.WithLogger(logging.Nop{}),
		awsconfig.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		awsconfig.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
		awsconfig.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
			t.MaxIdleConnsPerHost = 64
			t.ResponseHeaderTimeout = o.StallTimeout // a request without a body stalls waiting for its answer
		})),
	)
	cfg, err := awsconfig.LoadDefaultConfig(ctx, loads...)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	custom := o.Endpoint != "" || cfg.BaseEndpoint != nil || os.Getenv("AWS_ENDPOINT_URL_S3") != ""
	// No region from the options or the chain: ask the bucket (S3-compatible servers rarely
	// care, and keep the default).
	find := cfg.Region == ""
	if find {
		cfg.Region = defaultRegion
	}
	client := awss3.NewFromConfig(cfg, func(so *awss3.Options) {
		// A body damaged on its way is refused against the hash it was signed with (or its
		// Content-MD5 or checksum); it is sent again from its buffer, as a throttled one is.
		so.Retryer = retry.AddWithErrorCodes(so.Retryer, "XAmzContentSHA256Mismatch", "BadDigest")
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
		}
		so.UsePathStyle = custom
		if o.ForcePathStyle != nil {
			so.UsePathStyle = *o.ForcePathStyle
		}
	})
	o.Region = cfg.Region
	s := newStore(client, o, aws.ToString(client.Options().BaseEndpoint))
	if find {
		s.findRegion(ctx)
	}
	if s.endpoint == "" {
		region, _ := s.client.current()
		s.endpoint = "s3." + region + ".amazonaws.com"
	}
	return s, nil
}

// newStore builds a Store around client (the SDK's, or a test's fake, whose requests are
// signed for o.Region) with resolved options.
func newStore(client api, o Options, endpoint string) *Store {
	s := &Store{opts: o, endpoint: endpoint, now: time.Now, wait: sleep,
		limits: partLimits{minSize: minPartSize, maxSize: maxPartSize, maxParts: maxParts}}
	s.client = &regional{client: client, infof: s.infof, bucket: o.Bucket, region: o.Region}
	return s
}

// sleep waits for d, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Bucket returns the store's bucket.
func (s *Store) Bucket() string { return s.opts.Bucket }

// Object identifies one version of an object: what a restore pins its reads to.
type Object struct {
	Key       string
	Size      int64
	ETag      string
	VersionID string // empty on unversioned buckets
}

// Head returns the object's size, ETag and version, or ErrNotFound.
func (s *Store) Head(ctx context.Context, key string) (Object, error) {
	out, err := s.client.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: &s.opts.Bucket, Key: &key})
	if err != nil {
		if status(err) == http.StatusNotFound {
			return Object{}, fmt.Errorf("head %s: %w", key, ErrNotFound)
		}
		return Object{}, fmt.Errorf("head %s: %w", key, err)
	}
	return Object{Key: key, Size: aws.ToInt64(out.ContentLength), ETag: aws.ToString(out.ETag),
		VersionID: aws.ToString(out.VersionId)}, nil
}

// Delete removes the object at key (tests and probes).
func (s *Store) Delete(ctx context.Context, key string) error {
	_, err := s.client.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: &s.opts.Bucket, Key: &key})
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// status returns the HTTP status code of an SDK error, or 0.
func status(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// code returns the S3 error code of an SDK error ("PreconditionFailed", …), or "".
func code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}
