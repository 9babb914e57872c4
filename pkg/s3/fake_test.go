package s3

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// fakeS3 is an in-memory bucket behind the api seam. It answers as S3 does where the Store's
// flows branch (ETags, If-None-Match and If-Match, 404s, NoSuchUpload, part order and size),
// fails the calls a test picks, and records every call.
type fakeS3 struct {
	mu       sync.Mutex
	objects  map[string]fakeObject
	versions map[string]fakeObject // by version ID, on a versioned bucket
	uploads  map[string]*fakeUpload
	seq      int
	calls    []call

	versioned     bool  // every write gets a version ID
	minPart       int64 // every part but the last must be this big (EntityTooSmall)
	ignoreIfMatch bool  // GETs serve the current object whatever If-Match says
	ignoreINM     struct{ put, complete bool }

	region       string // the region of the client: calls without a region option are signed for it
	bucketRegion string // what HeadBucket's x-amz-bucket-region header says; "": no header

	// fault picks the fate of each call (under the fake's lock); nil: every call succeeds.
	fault func(c call) fault
	now   func() time.Time
}

type fakeObject struct {
	key, etag, version string
	data               []byte
	modified           time.Time // LastModified, from the fake's clock
}

type fakeUpload struct {
	key, id   string
	initiated time.Time
	parts     map[int32]fakeObject
}

// call is one recorded request: what the flows are asserted on.
type call struct {
	op          string // the SDK's operation name
	region      string // the region the call was signed for
	key         string
	part        int32   // UploadPart's number
	size        int     // UploadPart's and PutObject's body size
	rng         string  // GetObject's Range
	maxKeys     int32   // ListObjectsV2's MaxKeys
	ifMatch     string  // GetObject's If-Match
	ifNoneMatch string  // PutObject's and CompleteMultipartUpload's If-None-Match
	version     string  // GetObject's version ID
	parts       []int32 // CompleteMultipartUpload's part numbers, in the order sent
}

// fault is what happens to one call.
type fault struct {
	status  int    // answer with this HTTP status and S3 error code,
	code    string //
	lost    bool   // or with a transport error (connection reset, response lost)
	applied bool   // the call takes effect before it fails: a lost response, or an SDK retry's answer to one
	cutAt   int    // GetObject: the body breaks after this many bytes
	hang    bool   // the call waits for its context to end: a wedged server
	message string // the error's message; "": the status text
	// bucketRegion is the failed answer's x-amz-bucket-region header; "": none.
	bucketRegion string
}

func (f fault) failing() bool { return f.status != 0 || f.lost }

func newFake() *fakeS3 {
	return &fakeS3{objects: map[string]fakeObject{}, versions: map[string]fakeObject{},
		uploads: map[string]*fakeUpload{}, now: time.Now, region: "us-east-1"}
}

// signedFor returns the region a call with these options is signed for.
func (f *fakeS3) signedFor(opts []func(*awss3.Options)) string {
	o := awss3.Options{Region: f.region}
	for _, fn := range opts {
		fn(&o)
	}
	return o.Region
}

// apiError is how the SDK reports an S3 error answer: status() and code() read it.
func apiError(op string, status int, code string) error {
	return &smithy.OperationError{ServiceID: "S3", OperationName: op, Err: &awshttp.ResponseError{
		RequestID: "fake",
		ResponseError: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status, Header: http.Header{}}},
			Err:      &smithy.GenericAPIError{Code: code, Message: http.StatusText(status)},
		},
	}}
}

// errReset is the transport error of a lost response.
var errReset = errors.New("read: connection reset by peer")

func transportError(op string) error {
	return &smithy.OperationError{ServiceID: "S3", OperationName: op, Err: &smithyhttp.RequestSendError{Err: errReset}}
}

func (f fault) err(op string) error {
	if f.lost {
		return transportError(op)
	}
	err := apiError(op, f.status, f.code)
	re := err.(*smithy.OperationError).Err.(*awshttp.ResponseError)
	if f.message != "" {
		re.Err = &smithy.GenericAPIError{Code: f.code, Message: f.message}
	}
	if f.bucketRegion != "" {
		re.Response.Header.Set("X-Amz-Bucket-Region", f.bucketRegion)
	}
	return err
}

// begin records c and returns its fault, or the error it fails with before taking effect.
// It returns with the lock held unless it returns an error.
func (f *fakeS3) begin(ctx context.Context, c call) (fault, error) {
	f.mu.Lock()
	f.calls = append(f.calls, c)
	var ft fault
	if f.fault != nil {
		ft = f.fault(c)
	}
	if err := ctx.Err(); err != nil { // as the SDK: a request of a cancelled context is not sent
		f.mu.Unlock()
		return ft, &smithy.OperationError{ServiceID: "S3", OperationName: c.op, Err: err}
	}
	if ft.hang {
		f.mu.Unlock()
		<-ctx.Done()
		return ft, &smithy.OperationError{ServiceID: "S3", OperationName: c.op, Err: ctx.Err()}
	}
	if ft.failing() && !ft.applied {
		f.mu.Unlock()
		return ft, ft.err(c.op)
	}
	return ft, nil
}

// end releases the lock and returns the error of a call that failed after taking effect.
func (f *fakeS3) end(ft fault, op string, err error) error {
	f.mu.Unlock()
	if err == nil && ft.failing() {
		return ft.err(op)
	}
	return err
}

func etagOf(data []byte) string {
	sum := md5.Sum(data)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}

// store writes an object (the lock held).
func (f *fakeS3) store(key string, data []byte, etag string) fakeObject {
	o := fakeObject{key: key, data: data, etag: etag, modified: f.now()}
	if f.versioned {
		f.seq++
		o.version = fmt.Sprintf("v%d", f.seq)
		f.versions[o.version] = o
	}
	f.objects[key] = o
	return o
}

// put writes an object as another writer would, unrecorded.
func (f *fakeS3) put(key string, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.store(key, data, etagOf(data))
}

func (f *fakeS3) remove(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.objects, key)
}

func (f *fakeS3) object(key string) (fakeObject, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.objects[key]
	return o, ok
}

func (f *fakeS3) openUploads() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for id := range f.uploads {
		ids = append(ids, id)
	}
	return ids
}

// recorded returns the calls made so far, those of op only when op is given.
func (f *fakeS3) recorded(op ...string) []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(f.calls), func(c call) bool { return len(op) > 0 && !slices.Contains(op, c.op) })
}

func readBody(r io.Reader) ([]byte, error) {
	if r == nil {
		return nil, nil
	}
	return io.ReadAll(r)
}

func (f *fakeS3) HeadBucket(ctx context.Context, _ *awss3.HeadBucketInput, opts ...func(*awss3.Options)) (*awss3.HeadBucketOutput, error) {
	ft, err := f.begin(ctx, call{op: "HeadBucket", region: f.signedFor(opts)})
	if err != nil {
		return nil, err
	}
	out := &awss3.HeadBucketOutput{}
	if f.bucketRegion != "" {
		out.BucketRegion = aws.String(f.bucketRegion)
	}
	return out, f.end(ft, "HeadBucket", nil)
}

func (f *fakeS3) HeadObject(ctx context.Context, in *awss3.HeadObjectInput, opts ...func(*awss3.Options)) (*awss3.HeadObjectOutput, error) {
	ft, err := f.begin(ctx, call{op: "HeadObject", region: f.signedFor(opts), key: *in.Key})
	if err != nil {
		return nil, err
	}
	o, ok := f.objects[*in.Key]
	if !ok {
		return nil, f.end(fault{}, "", apiError("HeadObject", http.StatusNotFound, "NotFound"))
	}
	out := &awss3.HeadObjectOutput{ContentLength: aws.Int64(int64(len(o.data))), ETag: aws.String(o.etag)}
	if o.version != "" {
		out.VersionId = aws.String(o.version)
	}
	return out, f.end(ft, "HeadObject", nil)
}

func (f *fakeS3) GetObject(ctx context.Context, in *awss3.GetObjectInput, opts ...func(*awss3.Options)) (*awss3.GetObjectOutput, error) {
	c := call{op: "GetObject", region: f.signedFor(opts), key: *in.Key, rng: aws.ToString(in.Range), ifMatch: aws.ToString(in.IfMatch), version: aws.ToString(in.VersionId)}
	ft, err := f.begin(ctx, c)
	if err != nil {
		return nil, err
	}
	o, ok := f.objects[c.key]
	if c.version != "" {
		o, ok = f.versions[c.version]
	}
	if !ok {
		return nil, f.end(fault{}, "", apiError("GetObject", http.StatusNotFound, "NoSuchKey"))
	}
	if c.ifMatch != "" && c.ifMatch != o.etag && !f.ignoreIfMatch {
		return nil, f.end(fault{}, "", apiError("GetObject", http.StatusPreconditionFailed, "PreconditionFailed"))
	}
	var first, last int
	if _, err := fmt.Sscanf(c.rng, "bytes=%d-%d", &first, &last); err != nil || first > last || first >= len(o.data) {
		return nil, f.end(fault{}, "", apiError("GetObject", http.StatusRequestedRangeNotSatisfiable, "InvalidRange"))
	}
	last = min(last, len(o.data)-1)
	var body io.Reader = bytes.NewReader(o.data[first : last+1])
	if ft.cutAt > 0 {
		body = io.MultiReader(io.LimitReader(body, int64(ft.cutAt)), &brokenReader{errReset})
		ft = fault{} // the headers arrive; the body breaks
	}
	out := &awss3.GetObjectOutput{Body: io.NopCloser(body), ETag: aws.String(o.etag),
		ContentRange: aws.String(fmt.Sprintf("bytes %d-%d/%d", first, last, len(o.data)))}
	return out, f.end(ft, "GetObject", nil)
}

type brokenReader struct{ err error }

func (b *brokenReader) Read([]byte) (int, error) { return 0, b.err }

func (f *fakeS3) PutObject(ctx context.Context, in *awss3.PutObjectInput, opts ...func(*awss3.Options)) (*awss3.PutObjectOutput, error) {
	data, err := readBody(in.Body)
	if err != nil {
		return nil, transportError("PutObject")
	}
	ft, err := f.begin(ctx, call{op: "PutObject", region: f.signedFor(opts), key: *in.Key, size: len(data), ifNoneMatch: aws.ToString(in.IfNoneMatch)})
	if err != nil {
		return nil, err
	}
	if _, exists := f.objects[*in.Key]; exists && aws.ToString(in.IfNoneMatch) == "*" && !f.ignoreINM.put {
		return nil, f.end(fault{}, "", apiError("PutObject", http.StatusPreconditionFailed, "PreconditionFailed"))
	}
	o := f.store(*in.Key, data, etagOf(data))
	return &awss3.PutObjectOutput{ETag: aws.String(o.etag)}, f.end(ft, "PutObject", nil)
}

func (f *fakeS3) DeleteObject(ctx context.Context, in *awss3.DeleteObjectInput, opts ...func(*awss3.Options)) (*awss3.DeleteObjectOutput, error) {
	ft, err := f.begin(ctx, call{op: "DeleteObject", region: f.signedFor(opts), key: *in.Key})
	if err != nil {
		return nil, err
	}
	delete(f.objects, *in.Key)
	return &awss3.DeleteObjectOutput{}, f.end(ft, "DeleteObject", nil)
}

// DeleteObjects removes up to 1,000 keys, as S3 does; more is a MalformedXML error.
func (f *fakeS3) DeleteObjects(ctx context.Context, in *awss3.DeleteObjectsInput, opts ...func(*awss3.Options)) (*awss3.DeleteObjectsOutput, error) {
	ft, err := f.begin(ctx, call{op: "DeleteObjects", region: f.signedFor(opts), key: aws.ToString(in.Delete.Objects[0].Key)})
	if err != nil {
		return nil, err
	}
	if len(in.Delete.Objects) > 1000 {
		return nil, f.end(ft, "", apiError("DeleteObjects", http.StatusBadRequest, "MalformedXML"))
	}
	for _, o := range in.Delete.Objects {
		delete(f.objects, aws.ToString(o.Key))
	}
	return &awss3.DeleteObjectsOutput{}, f.end(ft, "DeleteObjects", nil)
}

func (f *fakeS3) CreateMultipartUpload(ctx context.Context, in *awss3.CreateMultipartUploadInput, opts ...func(*awss3.Options)) (*awss3.CreateMultipartUploadOutput, error) {
	ft, err := f.begin(ctx, call{op: "CreateMultipartUpload", region: f.signedFor(opts), key: *in.Key})
	if err != nil {
		return nil, err
	}
	f.seq++
	u := &fakeUpload{key: *in.Key, id: fmt.Sprintf("upload-%d", f.seq), initiated: f.now(), parts: map[int32]fakeObject{}}
	f.uploads[u.id] = u
	return &awss3.CreateMultipartUploadOutput{UploadId: aws.String(u.id)}, f.end(ft, "CreateMultipartUpload", nil)
}

func (f *fakeS3) UploadPart(ctx context.Context, in *awss3.UploadPartInput, opts ...func(*awss3.Options)) (*awss3.UploadPartOutput, error) {
	data, err := readBody(in.Body)
	if err != nil {
		return nil, transportError("UploadPart")
	}
	ft, err := f.begin(ctx, call{op: "UploadPart", region: f.signedFor(opts), key: *in.Key, part: *in.PartNumber, size: len(data)})
	if err != nil {
		return nil, err
	}
	u, ok := f.uploads[aws.ToString(in.UploadId)]
	if !ok {
		return nil, f.end(fault{}, "", apiError("UploadPart", http.StatusNotFound, "NoSuchUpload"))
	}
	p := fakeObject{data: data, etag: etagOf(data)}
	u.parts[*in.PartNumber] = p
	return &awss3.UploadPartOutput{ETag: aws.String(p.etag)}, f.end(ft, "UploadPart", nil)
}

func (f *fakeS3) CompleteMultipartUpload(ctx context.Context, in *awss3.CompleteMultipartUploadInput, opts ...func(*awss3.Options)) (*awss3.CompleteMultipartUploadOutput, error) {
	const op = "CompleteMultipartUpload"
	c := call{op: op, region: f.signedFor(opts), key: *in.Key, ifNoneMatch: aws.ToString(in.IfNoneMatch)}
	for _, p := range in.MultipartUpload.Parts {
		c.parts = append(c.parts, *p.PartNumber)
	}
	ft, err := f.begin(ctx, c)
	if err != nil {
		return nil, err
	}
	u, ok := f.uploads[aws.ToString(in.UploadId)]
	if !ok {
		return nil, f.end(fault{}, "", apiError(op, http.StatusNotFound, "NoSuchUpload"))
	}
	if _, exists := f.objects[c.key]; exists && c.ifNoneMatch == "*" && !f.ignoreINM.complete {
		return nil, f.end(fault{}, "", apiError(op, http.StatusPreconditionFailed, "PreconditionFailed"))
	}
	var data []byte
	sums := md5.New()
	for i, p := range in.MultipartUpload.Parts {
		part, ok := u.parts[*p.PartNumber]
		switch {
		case i > 0 && *p.PartNumber <= c.parts[i-1]:
			return nil, f.end(fault{}, "", apiError(op, http.StatusBadRequest, "InvalidPartOrder"))
		case !ok || aws.ToString(p.ETag) != part.etag:
			return nil, f.end(fault{}, "", apiError(op, http.StatusBadRequest, "InvalidPart"))
		case i < len(c.parts)-1 && int64(len(part.data)) < f.minPart:
			return nil, f.end(fault{}, "", apiError(op, http.StatusBadRequest, "EntityTooSmall"))
		}
		data = append(data, part.data...)
		sum, _ := hex.DecodeString(strings.Trim(part.etag, `"`))
		sums.Write(sum)
	}
	delete(f.uploads, u.id)
	o := f.store(c.key, data, fmt.Sprintf(`"%x-%d"`, sums.Sum(nil), len(c.parts)))
	return &awss3.CompleteMultipartUploadOutput{ETag: aws.String(o.etag)}, f.end(ft, op, nil)
}

func (f *fakeS3) AbortMultipartUpload(ctx context.Context, in *awss3.AbortMultipartUploadInput, opts ...func(*awss3.Options)) (*awss3.AbortMultipartUploadOutput, error) {
	ft, err := f.begin(ctx, call{op: "AbortMultipartUpload", region: f.signedFor(opts), key: *in.Key})
	if err != nil {
		return nil, err
	}
	if _, ok := f.uploads[aws.ToString(in.UploadId)]; !ok {
		return nil, f.end(fault{}, "", apiError("AbortMultipartUpload", http.StatusNotFound, "NoSuchUpload"))
	}
	delete(f.uploads, aws.ToString(in.UploadId))
	return &awss3.AbortMultipartUploadOutput{}, f.end(ft, "AbortMultipartUpload", nil)
}

// ListObjectsV2 lists in key order, MaxKeys at most (1,000 if unset), as S3 does.
func (f *fakeS3) ListObjectsV2(ctx context.Context, in *awss3.ListObjectsV2Input, opts ...func(*awss3.Options)) (*awss3.ListObjectsV2Output, error) {
	ft, err := f.begin(ctx, call{op: "ListObjectsV2", region: f.signedFor(opts), key: aws.ToString(in.Prefix), maxKeys: aws.ToInt32(in.MaxKeys)})
	if err != nil {
		return nil, err
	}
	limit := int(aws.ToInt32(in.MaxKeys))
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	var keys []string
	for k := range f.objects {
		rest, ok := strings.CutPrefix(k, aws.ToString(in.Prefix))
		if ok && (aws.ToString(in.Delimiter) == "" || !strings.Contains(rest, aws.ToString(in.Delimiter))) {
			keys = append(keys, k) // with a delimiter, deeper keys are common prefixes, not contents
		}
	}
	slices.Sort(keys)
	out := &awss3.ListObjectsV2Output{IsTruncated: aws.Bool(len(keys) > limit)}
	for _, k := range keys[:min(limit, len(keys))] {
		o := f.objects[k]
		out.Contents = append(out.Contents, types.Object{Key: aws.String(k), Size: aws.Int64(int64(len(o.data))),
			ETag: aws.String(o.etag), LastModified: aws.Time(o.modified)})
	}
	return out, f.end(ft, "ListObjectsV2", nil)
}

func (f *fakeS3) ListMultipartUploads(ctx context.Context, in *awss3.ListMultipartUploadsInput, opts ...func(*awss3.Options)) (*awss3.ListMultipartUploadsOutput, error) {
	ft, err := f.begin(ctx, call{op: "ListMultipartUploads", region: f.signedFor(opts), key: aws.ToString(in.Prefix)})
	if err != nil {
		return nil, err
	}
	out := &awss3.ListMultipartUploadsOutput{IsTruncated: aws.Bool(false)}
	for _, u := range f.uploads {
		if strings.HasPrefix(u.key, aws.ToString(in.Prefix)) {
			out.Uploads = append(out.Uploads, types.MultipartUpload{Key: aws.String(u.key), UploadId: aws.String(u.id), Initiated: aws.Time(u.initiated)})
		}
	}
	slices.SortFunc(out.Uploads, func(a, b types.MultipartUpload) int {
		return strings.Compare(*a.Key+*a.UploadId, *b.Key+*b.UploadId)
	})
	return out, f.end(ft, "ListMultipartUploads", nil)
}

// Fast tests run with parts of a kilobyte: the fake and the Store agree on shrunk limits.
const (
	testPart     = 1 << 10
	testMaxParts = 100
)

// logged collects a store's warnings or info lines.
type logged struct {
	mu          sync.Mutex
	warns, info []string
}

func (l *logged) Warnf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.warns = append(l.warns, fmt.Sprintf(format, args...))
}

func (l *logged) Infof(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.info = append(l.info, fmt.Sprintf(format, args...))
}

// Warnings returns the warnings logged so far.
func (l *logged) Warnings() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.warns)
}

// Infos returns the info lines logged so far.
func (l *logged) Infos() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.info)
}

// testStore is a Store on f with one-kilobyte parts, conditional writes on, and back-offs
// recorded instead of waited for.
type testStore struct {
	*Store
	log   logged
	mu    sync.Mutex
	waits []time.Duration
}

func newTestStore(t *testing.T, f *fakeS3, configure ...func(*Options)) *testStore {
	t.Helper()
	f.minPart = testPart
	o := Options{Bucket: "cache", Region: f.region, PartSize: testPart, Concurrency: 4, ConditionalWrites: ConditionalOn, VerdictDir: t.TempDir()}
	for _, c := range configure {
		c(&o)
	}
	ts := &testStore{}
	o.Log = &ts.log
	ts.Store = newStore(f, o.withDefaults(), "http://fake")
	ts.limits = partLimits{minSize: testPart, maxSize: 8 * testPart, maxParts: testMaxParts}
	ts.wait = func(ctx context.Context, d time.Duration) error {
		ts.mu.Lock()
		ts.waits = append(ts.waits, d)
		ts.mu.Unlock()
		return ctx.Err()
	}
	return ts
}

func (ts *testStore) waited() []time.Duration {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return slices.Clone(ts.waits)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// ops lists the operations of calls, in order.
func ops(calls []call) []string {
	var s []string
	for _, c := range calls {
		s = append(s, c.op)
	}
	return s
}

// count counts the calls of op.
func count(calls []call, op string) int {
	return len(slices.DeleteFunc(slices.Clone(calls), func(c call) bool { return c.op != op }))
}

func noUploadsLeft(t *testing.T, f *fakeS3) {
	t.Helper()
	if ids := f.openUploads(); len(ids) != 0 {
		t.Fatalf("multipart uploads left behind: %v", ids)
	}
}
