package s3

import (
	"context"
	"errors"
	"io"
	"net/http"
	"regexp"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
)

// regional is the Store's client: it sends each request signed for the region it believes the
// bucket is in, and a request answered with a wrong-region error (301 PermanentRedirect, 400
// AuthorizationHeaderMalformed, or a 301, 400 or 403 whose x-amz-bucket-region header names
// another region) is sent once more in the region the answer names. The client switches region
// once per Store, and says so in the log; requests in flight when it switched are resent too.
type regional struct {
	client api
	infof  func(format string, args ...any)
	bucket string

	mu       sync.Mutex
	region   string // the region requests are signed for
	switched bool   // region is the bucket's, named by an answer: it never changes again
}

// wrongRegion returns the region an error answer says the bucket is in, or "".
func wrongRegion(err error) string {
	var re *awshttp.ResponseError
	if !errors.As(err, &re) {
		return ""
	}
	// Only the statuses S3 rejects a wrong region with: some servers name their region on
	// every answer, and a 404 is never the region's fault.
	switch re.HTTPStatusCode() {
	case http.StatusMovedPermanently, http.StatusBadRequest, http.StatusForbidden:
		if r := re.Response.Header.Get("x-amz-bucket-region"); r != "" {
			return r
		}
	}
	if code(err) == "AuthorizationHeaderMalformed" {
		// The SDK keeps the message but drops the <Region> element: "the region 'us-east-1' is
		// wrong; expecting 'eu-west-3'" (AWS), or with double quotes (versitygw).
		if m := expecting.FindStringSubmatch(err.Error()); m != nil {
			return m[1]
		}
	}
	return ""
}

var expecting = regexp.MustCompile(`expecting ['"]([a-z0-9-]+)['"]`)

// current returns the region to sign for and the options that select it.
func (r *regional) current() (string, []func(*awss3.Options)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.switched {
		return r.region, nil
	}
	region := r.region
	return region, []func(*awss3.Options){func(o *awss3.Options) { o.Region = region }}
}

// found records that the bucket is in region, as an answer to a request signed for sent said.
// It reports whether requests are now signed for region: false when the client already
// switched to another one (two answers disagree: the first one holds).
func (r *regional) found(region, sent, by string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.switched && region != r.region {
		r.infof("bucket %s is in region %s, not %s (%s): sending its requests there", r.bucket, region, sent, by)
		r.region, r.switched = region, true
	}
	return r.region == region
}

// send makes a request, and makes it once more in the bucket's region if the answer names
// another region than the one it was signed for. body is the request's body, rewound for the
// second attempt; a body that cannot be rewound is not sent again.
func send[O any](r *regional, op string, body io.Reader, opts []func(*awss3.Options), call func(opts []func(*awss3.Options)) (*O, error)) (*O, error) {
	sent, regionOpts := r.current()
	out, err := call(append(opts, regionOpts...))
	if err == nil {
		return out, nil
	}
	region := wrongRegion(err)
	if region == "" || region == sent || !r.found(region, sent, "answer to "+op) {
		return out, err
	}
	if body != nil {
		s, ok := body.(io.Seeker)
		if !ok {
			return out, err
		}
		if _, serr := s.Seek(0, io.SeekStart); serr != nil {
			return out, err
		}
	}
	_, regionOpts = r.current()
	return call(append(opts, regionOpts...))
}

// findRegion asks the bucket where it is (HeadBucket's x-amz-bucket-region header, which S3
// sends on 200, 301 and 403 answers alike) and signs every later request for that region. An
// endpoint that does not answer the header (most S3-compatible servers ignore regions) keeps the
// default; any failure is left for the requests that follow to report. One attempt, bounded by
// the stall timeout, so a dead endpoint costs no more than that.
func (s *Store) findRegion(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.StallTimeout)
	defer cancel()
	sent, _ := s.client.current()
	out, err := s.client.HeadBucket(ctx, &awss3.HeadBucketInput{Bucket: &s.opts.Bucket},
		func(o *awss3.Options) { o.RetryMaxAttempts = 1 })
	if err == nil && aws.ToString(out.BucketRegion) != "" {
		s.client.found(aws.ToString(out.BucketRegion), sent, "HeadBucket")
	}
}

// defaultRegion is what requests are signed for when neither the options nor the SDK's chain
// name a region and the bucket does not say.
const defaultRegion = "us-east-1"

// The api methods: each request goes through send.

func (r *regional) HeadBucket(ctx context.Context, in *awss3.HeadBucketInput, opts ...func(*awss3.Options)) (*awss3.HeadBucketOutput, error) {
	return send(r, "HeadBucket", nil, opts, func(o []func(*awss3.Options)) (*awss3.HeadBucketOutput, error) {
		return r.client.HeadBucket(ctx, in, o...)
	})
}

func (r *regional) HeadObject(ctx context.Context, in *awss3.HeadObjectInput, opts ...func(*awss3.Options)) (*awss3.HeadObjectOutput, error) {
	return send(r, "HeadObject", nil, opts, func(o []func(*awss3.Options)) (*awss3.HeadObjectOutput, error) {
		return r.client.HeadObject(ctx, in, o...)
	})
}

func (r *regional) GetObject(ctx context.Context, in *awss3.GetObjectInput, opts ...func(*awss3.Options)) (*awss3.GetObjectOutput, error) {
	return send(r, "GetObject", nil, opts, func(o []func(*awss3.Options)) (*awss3.GetObjectOutput, error) {
		return r.client.GetObject(ctx, in, o...)
	})
}

func (r *regional) PutObject(ctx context.Context, in *awss3.PutObjectInput, opts ...func(*awss3.Options)) (*awss3.PutObjectOutput, error) {
	return send(r, "PutObject", in.Body, opts, func(o []func(*awss3.Options)) (*awss3.PutObjectOutput, error) {
		return r.client.PutObject(ctx, in, o...)
	})
}

func (r *regional) DeleteObject(ctx context.Context, in *awss3.DeleteObjectInput, opts ...func(*awss3.Options)) (*awss3.DeleteObjectOutput, error) {
	return send(r, "DeleteObject", nil, opts, func(o []func(*awss3.Options)) (*awss3.DeleteObjectOutput, error) {
		return r.client.DeleteObject(ctx, in, o...)
	})
}

func (r *regional) DeleteObjects(ctx context.Context, in *awss3.DeleteObjectsInput, opts ...func(*awss3.Options)) (*awss3.DeleteObjectsOutput, error) {
	return send(r, "DeleteObjects", nil, opts, func(o []func(*awss3.Options)) (*awss3.DeleteObjectsOutput, error) {
		return r.client.DeleteObjects(ctx, in, o...)
	})
}

func (r *regional) CreateMultipartUpload(ctx context.Context, in *awss3.CreateMultipartUploadInput, opts ...func(*awss3.Options)) (*awss3.CreateMultipartUploadOutput, error) {
	return send(r, "CreateMultipartUpload", nil, opts, func(o []func(*awss3.Options)) (*awss3.CreateMultipartUploadOutput, error) {
		return r.client.CreateMultipartUpload(ctx, in, o...)
	})
}

func (r *regional) UploadPart(ctx context.Context, in *awss3.UploadPartInput, opts ...func(*awss3.Options)) (*awss3.UploadPartOutput, error) {
	return send(r, "UploadPart", in.Body, opts, func(o []func(*awss3.Options)) (*awss3.UploadPartOutput, error) {
		return r.client.UploadPart(ctx, in, o...)
	})
}

func (r *regional) CompleteMultipartUpload(ctx context.Context, in *awss3.CompleteMultipartUploadInput, opts ...func(*awss3.Options)) (*awss3.CompleteMultipartUploadOutput, error) {
	return send(r, "CompleteMultipartUpload", nil, opts, func(o []func(*awss3.Options)) (*awss3.CompleteMultipartUploadOutput, error) {
		return r.client.CompleteMultipartUpload(ctx, in, o...)
	})
}

func (r *regional) AbortMultipartUpload(ctx context.Context, in *awss3.AbortMultipartUploadInput, opts ...func(*awss3.Options)) (*awss3.AbortMultipartUploadOutput, error) {
	return send(r, "AbortMultipartUpload", nil, opts, func(o []func(*awss3.Options)) (*awss3.AbortMultipartUploadOutput, error) {
		return r.client.AbortMultipartUpload(ctx, in, o...)
	})
}

func (r *regional) ListMultipartUploads(ctx context.Context, in *awss3.ListMultipartUploadsInput, opts ...func(*awss3.Options)) (*awss3.ListMultipartUploadsOutput, error) {
	return send(r, "ListMultipartUploads", nil, opts, func(o []func(*awss3.Options)) (*awss3.ListMultipartUploadsOutput, error) {
		return r.client.ListMultipartUploads(ctx, in, o...)
	})
}

func (r *regional) ListObjectsV2(ctx context.Context, in *awss3.ListObjectsV2Input, opts ...func(*awss3.Options)) (*awss3.ListObjectsV2Output, error) {
	return send(r, "ListObjectsV2", nil, opts, func(o []func(*awss3.Options)) (*awss3.ListObjectsV2Output, error) {
		return r.client.ListObjectsV2(ctx, in, o...)
	})
}

var _ api = (*regional)(nil)
