package s3

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The fast layer: the upload flows against the recording fake, in milliseconds.

func TestPartSizeFor(t *testing.T) {
	s3 := partLimits{minSize: minPartSize, maxSize: maxPartSize, maxParts: maxParts}
	for _, tc := range []struct {
		base int64
		part int
		want int64
	}{
		{DefaultPartSize, 1, DefaultPartSize},
		{DefaultPartSize, 1000, DefaultPartSize},
		{DefaultPartSize, 1001, 2 * DefaultPartSize},
		{DefaultPartSize, 2001, 4 * DefaultPartSize},
		{DefaultPartSize, 10000, DefaultPartSize << 9},
		{1 << 20, 1, minPartSize},             // below S3's smallest part
		{1 << 30, 9001, maxPartSize},          // above its largest
		{minPartSize, 9001, minPartSize << 9}, // 2.5 GiB
	} {
		if got := s3.partSizeFor(tc.base, tc.part); got != tc.want {
			t.Errorf("partSizeFor(%d, %d) = %d, want %d", tc.base, tc.part, got, tc.want)
		}
	}
	// The growth is what lets 10,000 parts hold S3's largest object at the default size.
	var total int64
	for part := 1; part <= maxParts; part++ {
		total += s3.partSizeFor(DefaultPartSize, part)
	}
	if total < 5<<40 {
		t.Errorf("%d parts from %d bytes hold %d bytes, less than 5 TiB", maxParts, DefaultPartSize, total)
	}
}

// Every size of stream makes the calls it should, the parts are completed in order whatever
// order they were uploaded in, and the object is the stream with the ETag S3 gives it.
func TestUploadSizes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		size  int
		parts int // 0: a single PutObject
	}{
		{"empty", 0, 0},
		{"short", testPart - 1, 0},
		{"one part exactly", testPart, 1},
		{"parts exactly", 3 * testPart, 3},
		{"parts and a short one", 9*testPart + 1, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			s := newTestStore(t, f)
			body := randomBytes(tc.size)
			res, err := s.Upload(t.Context(), "k", bytes.NewReader(body), PutOptions{})
			if err != nil || !res.Stored || res.Size != int64(tc.size) {
				t.Fatalf("upload: %+v, %v", res, err)
			}
			o, _ := f.object("k")
			if !bytes.Equal(o.data, body) {
				t.Fatal("the object is not the stream")
			}
			if res.ETag != o.etag {
				t.Fatalf("reported ETag %q, the object's is %q", res.ETag, o.etag)
			}
			calls := slices.DeleteFunc(f.recorded(), func(c call) bool { return c.op == "ListMultipartUploads" }) // the stale-upload sweep, in parallel
			if tc.parts == 0 {
				if got := ops(calls); !slices.Equal(got, []string{"PutObject"}) {
					t.Fatalf("calls %v", got)
				}
				if o.etag != etagOf(body) || calls[0].ifNoneMatch != "*" {
					t.Fatalf("ETag %s, If-None-Match %q", o.etag, calls[0].ifNoneMatch)
				}
				return
			}
			var parts []int32
			for _, c := range f.recorded("UploadPart") {
				parts = append(parts, c.part)
			}
			slices.Sort(parts)
			complete := f.recorded("CompleteMultipartUpload")
			want := make([]int32, tc.parts)
			for i := range want {
				want[i] = int32(i + 1)
			}
			if !slices.Equal(parts, want) || len(complete) != 1 || !slices.Equal(complete[0].parts, want) || complete[0].ifNoneMatch != "*" {
				t.Fatalf("uploaded parts %v, completed %+v; want %v once each, in order, If-None-Match: *", parts, complete, want)
			}
			if !strings.HasSuffix(o.etag, "-"+strconv.Itoa(tc.parts)+`"`) {
				t.Fatalf("ETag %s, want a multipart ETag of %d parts", o.etag, tc.parts)
			}
			noUploadsLeft(t, f)
		})
	}
}

// Parts grow as partSizeFor says, every maxParts/10 parts, and a stream that needs more than
// maxParts parts is refused and its upload aborted.
func TestPartsGrowAndAreLimited(t *testing.T) {
	f := newFake()
	s := newTestStore(t, f)
	var size int
	for part := 1; part <= 45; part++ {
		size += int(s.limits.partSizeFor(testPart, part))
	}
	body := randomBytes(size + 10) // 46 parts: the last one short
	if res, err := s.Upload(t.Context(), "grown", bytes.NewReader(body), PutOptions{}); err != nil || !res.Stored {
		t.Fatalf("upload: %+v, %v", res, err)
	}
	for _, c := range f.recorded("UploadPart") {
		want := int(s.limits.partSizeFor(testPart, int(c.part)))
		if c.part == 46 {
			want = 10
		}
		if c.size != want {
			t.Errorf("part %d has %d bytes, want %d", c.part, c.size, want)
		}
	}
	if o, _ := f.object("grown"); !bytes.Equal(o.data, body) {
		t.Fatal("the object is not the stream")
	}

	// Too long: more than testMaxParts parts even at the largest size.
	f = newFake()
	s = newTestStore(t, f)
	_, err := s.Upload(t.Context(), "huge", bytes.NewReader(make([]byte, testMaxParts*8*testPart)), PutOptions{})
	if err == nil || !strings.Contains(err.Error(), "archive needs more than 100 parts") {
		t.Fatalf("upload of too long a stream: %v", err)
	}
	if n := count(f.recorded(), "CompleteMultipartUpload"); n != 0 {
		t.Fatalf("%d completes", n)
	}
	if _, ok := f.object("huge"); ok {
		t.Fatal("an object was created")
	}
	noUploadsLeft(t, f)
}

// UploadEach reads the stream once for all keys; a key whose upload fails is dropped, aborted
// and reported, and the others are stored.
func TestUploadEachWithOneKeyFailing(t *testing.T) {
	f := newFake()
	s := newTestStore(t, f)
	f.fault = func(c call) fault {
		if c.op == "UploadPart" && c.key == "b" && c.part == 2 {
			return fault{status: 500, code: "InternalError"}
		}
		return fault{}
	}
	body := randomBytes(6*testPart + 5)
	r := &countingReader{r: bytes.NewReader(body)}
	res, errs := s.UploadEach(t.Context(), []string{"a", "b", "c"}, r, PutOptions{})
	if r.n != len(body) {
		t.Fatalf("read %d bytes of %d", r.n, len(body))
	}
	for i, key := range []string{"a", "c"} {
		i *= 2
		if errs[i] != nil || !res[i].Stored {
			t.Fatalf("%s: %+v, %v", key, res[i], errs[i])
		}
		if o, _ := f.object(key); !bytes.Equal(o.data, body) {
			t.Fatalf("%s is not the stream", key)
		}
	}
	if errs[1] == nil || !strings.Contains(errs[1].Error(), "upload b: upload part 2") || res[1].Stored {
		t.Fatalf("b: %+v, %v; want the failed part", res[1], errs[1])
	}
	if _, ok := f.object("b"); ok {
		t.Fatal("b was created")
	}
	aborts := f.recorded("AbortMultipartUpload")
	if len(aborts) != 1 || aborts[0].key != "b" {
		t.Fatalf("aborts %+v, want b's", aborts)
	}
	noUploadsLeft(t, f)
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += n
	return n, err
}

// A save cancelled midway (SIGTERM) aborts its upload with a fresh context and completes nothing.
func TestCancelledUploadIsAborted(t *testing.T) {
	f := newFake()
	s := newTestStore(t, f)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	r := io.MultiReader(bytes.NewReader(randomBytes(3*testPart)), &cancellingReader{cancel: cancel}, bytes.NewReader(randomBytes(3*testPart)))
	_, err := s.Upload(ctx, "k", r, PutOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("upload: %v, want context.Canceled", err)
	}
	calls := f.recorded()
	if count(calls, "CompleteMultipartUpload") != 0 || count(calls, "AbortMultipartUpload") != 1 {
		t.Fatalf("calls %v; want an abort and no complete", ops(calls))
	}
	noUploadsLeft(t, f)
}

// cancellingReader cancels a context when it is reached, and reads as empty.
type cancellingReader struct{ cancel context.CancelFunc }

func (c *cancellingReader) Read([]byte) (int, error) { c.cancel(); return 0, io.EOF }

// An abort is tried again, with growing back-offs, until it succeeds or is refused; an abort
// whose answer was lost is found done by the next attempt (NoSuchUpload), which is success.
func TestAbortAttempts(t *testing.T) {
	const ms = time.Millisecond
	for _, tc := range []struct {
		name    string
		faults  []fault // the fates of the abort's attempts, in order; then none
		aborts  int
		waits   []time.Duration
		failure bool // the upload's error reports the abort's
	}{
		{"first time", nil, 1, nil, false},
		{"after 5xx and a reset", []fault{{status: 503, code: "SlowDown"}, {status: 500, code: "InternalError"}, {lost: true}}, 4, []time.Duration{250 * ms, 500 * ms, 750 * ms}, false},
		{"answer lost", []fault{{lost: true, applied: true}}, 2, []time.Duration{250 * ms}, false},
		{"refused", []fault{{status: 403, code: "AccessDenied"}}, 1, nil, true},
		{"endpoint dead: gives up after abortAttempts", slices.Repeat([]fault{{status: 502, code: "BadGateway"}}, 9), abortAttempts,
			[]time.Duration{250 * ms, 500 * ms, 750 * ms, 1000 * ms}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			s := newTestStore(t, f)
			aborts := 0
			f.fault = func(c call) fault {
				if c.op != "AbortMultipartUpload" {
					return fault{}
				}
				aborts++
				if aborts <= len(tc.faults) {
					return tc.faults[aborts-1]
				}
				return fault{}
			}
			broken := errors.New("archive broke")
			r := io.MultiReader(bytes.NewReader(randomBytes(2*testPart)), &brokenReader{broken})
			_, err := s.Upload(t.Context(), "k", r, PutOptions{})
			if !errors.Is(err, broken) {
				t.Fatalf("upload: %v, want the archive's error", err)
			}
			if got := strings.Contains(err.Error(), "abort multipart upload"); got != tc.failure {
				t.Fatalf("upload: %v; reports the abort: %t, want %t", err, got, tc.failure)
			}
			if aborts != tc.aborts || !slices.Equal(s.waited(), tc.waits) {
				t.Fatalf("%d aborts after waits %v; want %d after %v", aborts, s.waited(), tc.aborts, tc.waits)
			}
			if !tc.failure {
				noUploadsLeft(t, f)
			}
		})
	}
}

// The outcome of a create: 412 is a lost race (not stored, not an error) unless the object
// that won is ours, whose response was lost (the SDK's retry is answered 412 or, for a
// Complete, NoSuchUpload); 409 asks for the whole upload again; other errors are errors.
// An upload that does not complete is aborted.
func TestCreateOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		size   int
		exists bool  // another writer's object is there first
		fault  fault // the create's fate
		stored bool
		err    error // errors.Is; nil: none
	}{
		{"put", 100, false, fault{}, true, nil},
		{"put over another's", 100, true, fault{}, false, nil},
		{"put whose retry got 412", 100, false, fault{status: 412, code: "PreconditionFailed", applied: true}, true, nil},
		{"put 409", 100, false, fault{status: 409, code: "ConditionalRequestConflict"}, false, ErrConflict},
		{"put 500", 100, false, fault{status: 500, code: "InternalError"}, false, errAny},
		{"complete", 3 * testPart, false, fault{}, true, nil},
		{"complete over another's", 3 * testPart, true, fault{}, false, nil},
		{"complete whose retry got 412", 3 * testPart, false, fault{status: 412, code: "PreconditionFailed", applied: true}, true, nil},
		{"complete whose retry got NoSuchUpload", 3 * testPart, false, fault{status: 404, code: "NoSuchUpload", applied: true}, true, nil},
		{"complete NoSuchUpload", 3 * testPart, false, fault{status: 404, code: "NoSuchUpload"}, false, errAny},
		{"complete 409", 3 * testPart, false, fault{status: 409, code: "ConditionalRequestConflict"}, false, ErrConflict},
		{"complete lost", 3 * testPart, false, fault{lost: true}, false, errAny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			s := newTestStore(t, f)
			other := randomBytes(tc.size)
			if tc.exists {
				f.put("k", other)
			}
			f.fault = func(c call) fault {
				if c.op == "PutObject" || c.op == "CompleteMultipartUpload" {
					return tc.fault
				}
				return fault{}
			}
			body := randomBytes(tc.size)
			res, err := s.Upload(t.Context(), "k", bytes.NewReader(body), PutOptions{})
			if res.Stored != tc.stored || (tc.err == nil) != (err == nil) || (tc.err != nil && tc.err != errAny && !errors.Is(err, tc.err)) {
				t.Fatalf("upload: %+v, %v; want stored %t, error %v", res, err, tc.stored, tc.err)
			}
			o, ok := f.object("k")
			switch {
			case tc.stored && !bytes.Equal(o.data, body):
				t.Fatal("stored, but the object is not the upload's")
			case tc.exists && !bytes.Equal(o.data, other):
				t.Fatal("another writer's object was overwritten")
			case !tc.stored && !tc.exists && ok:
				t.Fatal("an object was created")
			case tc.stored && res.ETag != o.etag, !tc.stored && res.ETag != "":
				t.Fatalf("reported ETag %q; the object's is %q", res.ETag, o.etag)
			}
			noUploadsLeft(t, f)
		})
	}
}

// Two jobs that save the same tree upload the same bytes, so the loser's conditional Complete
// (412) finds an object with the very ETag its own parts make, as a Complete whose answer was lost
// would: it is reported stored, and its upload, still open, is aborted all the same.
func TestSameBytesUploadedTwice(t *testing.T) {
	f := newFake()
	s := newTestStore(t, f)
	body := randomBytes(3 * testPart)
	first, err := s.Upload(t.Context(), "k", bytes.NewReader(body), PutOptions{})
	if err != nil || !first.Stored {
		t.Fatalf("first upload: %+v, %v", first, err)
	}
	second, err := s.Upload(t.Context(), "k", bytes.NewReader(body), PutOptions{})
	if err != nil || !second.Stored || second.ETag != first.ETag {
		t.Fatalf("second upload of the same bytes: %+v, %v; want stored with ETag %s", second, err, first.ETag)
	}
	if n := count(f.recorded(), "AbortMultipartUpload"); n != 1 {
		t.Fatalf("%d aborts, want the second upload's", n)
	}
	noUploadsLeft(t, f)
}

// errAny stands for any error in tables.
var errAny = errors.New("any error")

// An endpoint that answers 501 to If-None-Match gets a HEAD and a plain write from then on,
// with one warning.
func TestNotImplementedFallback(t *testing.T) {
	f := newFake()
	s := newTestStore(t, f)
	f.fault = func(c call) fault {
		if c.ifNoneMatch != "" {
			return fault{status: 501, code: "NotImplemented"}
		}
		return fault{}
	}
	for _, size := range []int{100, 3 * testPart} {
		key := "k" + strconv.Itoa(size)
		before := len(f.recorded())
		if res, err := s.Upload(t.Context(), key, bytes.NewReader(randomBytes(size)), PutOptions{}); err != nil || !res.Stored {
			t.Fatalf("upload of %d bytes: %+v, %v", size, res, err)
		}
		creates := slices.DeleteFunc(f.recorded()[before:], func(c call) bool {
			return c.op != "PutObject" && c.op != "CompleteMultipartUpload" && c.op != "HeadObject"
		})
		if len(creates) != 3 || creates[0].ifNoneMatch != "*" || creates[1].op != "HeadObject" || creates[2].ifNoneMatch != "" {
			t.Fatalf("calls %+v; want a conditional create (501), a HEAD, a plain create", creates)
		}
		// The object exists now: a second save finds it with HEAD and leaves it alone.
		if res, err := s.Upload(t.Context(), key, bytes.NewReader(randomBytes(size)), PutOptions{}); err != nil || res.Stored {
			t.Fatalf("second upload of %d bytes: %+v, %v; want not stored", size, res, err)
		}
	}
	if w := s.log.Warnings(); len(w) != 1 || !strings.Contains(w[0], "501 Not Implemented") {
		t.Fatalf("warnings %q, want one about 501", w)
	}
	noUploadsLeft(t, f)
}

// Overwrite writes without If-None-Match, over an existing object.
func TestOverwrite(t *testing.T) {
	f := newFake()
	s := newTestStore(t, f)
	f.put("k", []byte("old"))
	if res, err := s.Upload(t.Context(), "k", strings.NewReader("new"), PutOptions{Overwrite: true}); err != nil || !res.Stored {
		t.Fatalf("overwrite: %+v, %v", res, err)
	}
	puts := f.recorded("PutObject")
	if o, _ := f.object("k"); string(o.data) != "new" || len(puts) != 1 || puts[0].ifNoneMatch != "" {
		t.Fatalf("object %q after %+v", o.data, puts)
	}
}

// A save aborts the incomplete multipart uploads of exactly its key started over a day ago,
// says how many, and leaves younger ones and other keys' alone.
func TestStaleUploadSweep(t *testing.T) {
	f := newFake()
	s := newTestStore(t, f)
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	for id, u := range map[string]fakeUpload{
		"old":       {key: "k", initiated: now.Add(-25 * time.Hour)},
		"older":     {key: "k", initiated: now.Add(-48 * time.Hour)},
		"fresh":     {key: "k", initiated: now.Add(-23 * time.Hour)},
		"other-key": {key: "k-other", initiated: now.Add(-48 * time.Hour)},
	} {
		f.uploads[id] = &fakeUpload{key: u.key, id: id, initiated: u.initiated, parts: map[int32]fakeObject{}}
	}
	if res, err := s.Upload(t.Context(), "k", strings.NewReader("cache"), PutOptions{}); err != nil || !res.Stored {
		t.Fatalf("upload: %+v, %v", res, err)
	}
	left := f.openUploads()
	slices.Sort(left)
	if !slices.Equal(left, []string{"fresh", "other-key"}) {
		t.Fatalf("uploads left %v", left)
	}
	if msgs := s.log.Infos(); len(msgs) != 1 || !strings.Contains(msgs[0], "Aborted 2 incomplete multipart upload(s) of k") {
		t.Fatalf("info lines %q", msgs)
	}

	// A policy without s3:ListBucketMultipartUploads is not news; another failure is said.
	for status, want := range map[int]int{403: 0, 500: 1} {
		f := newFake()
		s := newTestStore(t, f)
		f.fault = func(c call) fault {
			if c.op == "ListMultipartUploads" {
				return fault{status: status, code: "X"}
			}
			return fault{}
		}
		if res, err := s.Upload(t.Context(), "k", strings.NewReader("cache"), PutOptions{}); err != nil || !res.Stored {
			t.Fatalf("upload: %+v, %v", res, err)
		}
		if got := len(s.log.Infos()); got != want {
			t.Errorf("listing answered %d: %d info lines %q, want %d", status, got, s.log.Infos(), want)
		}
	}
}

// A request that stalls is cancelled by the watchdog and tried again, up to stallAttempts times.
func TestStalledRequestsAreAttemptedAgain(t *testing.T) {
	for _, tc := range []struct {
		name   string
		op     string
		size   int
		stalls int
		stored bool
	}{
		{"put once", "PutObject", 100, 1, true},
		{"part twice", "UploadPart", 3 * testPart, 2, true},
		{"put every time", "PutObject", 100, stallAttempts, false},
		{"part every time", "UploadPart", 3 * testPart, stallAttempts, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			s := newTestStore(t, f, func(o *Options) { o.StallTimeout = 20 * time.Millisecond })
			stalls := 0
			f.fault = func(c call) fault {
				if c.op == tc.op && c.part <= 1 && stalls < tc.stalls {
					stalls++
					return fault{hang: true}
				}
				return fault{}
			}
			res, err := s.Upload(t.Context(), "k", bytes.NewReader(randomBytes(tc.size)), PutOptions{})
			if res.Stored != tc.stored || (err == nil) != tc.stored || (err != nil && !strings.Contains(err.Error(), "stalled")) {
				t.Fatalf("upload: %+v, %v; want stored %t, else a stall error", res, err, tc.stored)
			}
			if stalls != tc.stalls {
				t.Fatalf("%d stalls, want %d", stalls, tc.stalls)
			}
			noUploadsLeft(t, f)
		})
	}
}

func TestOptionsDefaults(t *testing.T) {
	got := Options{Bucket: "b"}.withDefaults()
	want := Options{Bucket: "b", Concurrency: DefaultConcurrency, PartSize: DefaultPartSize,
		StallTimeout: DefaultStallTimeout, ConditionalWrites: ConditionalAuto}
	if got.Bucket != want.Bucket || got.Concurrency != want.Concurrency || got.PartSize != want.PartSize ||
		got.StallTimeout != want.StallTimeout || got.ConditionalWrites != want.ConditionalWrites {
		t.Fatalf("defaults %+v, want %+v", got, want)
	}
	set := Options{Concurrency: 2, PartSize: 6 << 20, StallTimeout: time.Second, ConditionalWrites: ConditionalOff}
	if got := set.withDefaults(); got.Concurrency != 2 || got.PartSize != 6<<20 || got.StallTimeout != time.Second || got.ConditionalWrites != ConditionalOff {
		t.Fatalf("set options changed: %+v", got)
	}
}

// Part buffers: one a part is done with is used again before any is added; new ones are added
// only while every one is busy, up to concurrency (or the budget); a recycled buffer too small
// for grown parts is let go; a reader waiting for one stops when its context ends.
func TestPartBuffers(t *testing.T) {
	const part = 16
	first := make([]byte, part)
	t.Run("a free buffer is used again", func(t *testing.T) {
		b := newPartBuffers(4, part, first)
		b.put(first)
		for range 10 {
			buf, err := b.get(t.Context(), part)
			if err != nil || &buf[0] != &first[0] {
				t.Fatalf("got a new buffer (%v) while the first was free", err)
			}
			b.put(buf)
		}
		if b.count != 1 {
			t.Fatalf("%d buffers, want 1", b.count)
		}
	})
	t.Run("busy buffers are added up to concurrency, then waited for", func(t *testing.T) {
		b := newPartBuffers(3, part, first)
		seen := map[*byte]bool{&first[0]: true}
		for range 2 {
			buf, err := b.get(t.Context(), part)
			if err != nil || seen[&buf[0]] {
				t.Fatalf("get: %v (a buffer in use handed out again: %v)", err, seen[&buf[0]])
			}
			seen[&buf[0]] = true
		}
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		defer cancel()
		if _, err := b.get(ctx, part); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a fourth buffer with three busy: %v", err)
		}
		go b.put(first)
		if buf, err := b.get(t.Context(), part); err != nil || &buf[0] != &first[0] {
			t.Fatalf("waited for a buffer, got another one (%v)", err)
		}
	})
	t.Run("the budget bounds grown parts", func(t *testing.T) {
		b := newPartBuffers(4, part, first) // budget 64 bytes
		big, err := b.get(t.Context(), 2*part)
		if err != nil || b.count != 2 {
			t.Fatalf("get: %v, %d buffers", err, b.count)
		}
		b.put(first) // too small for the grown parts: let go
		if _, err := b.get(t.Context(), 2*part); err != nil || b.count != 2 || b.held != 4*part {
			t.Fatalf("get: %v, %d buffers of %d bytes, want 2 of 64", err, b.count, b.held)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		defer cancel()
		if _, err := b.get(ctx, 2*part); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a buffer over the budget: %v", err)
		}
		b.put(big)
		if buf, err := b.get(t.Context(), 2*part); err != nil || &buf[0] != &big[0] {
			t.Fatalf("waited for a buffer, got another one (%v)", err)
		}
	})
}
