package s3_test

import (
	"bytes"
	"context"
	"crypto/rand"
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
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/s3test"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/s3"
)

const partSize = 5 << 20

// proxied returns a store that talks to srv through a fault-injecting proxy; configure, if
// given, changes the store's options.
func proxied(t *testing.T, srv *s3test.Server, mode s3.Conditional, configure ...func(*s3.Options)) (*s3.Store, *s3test.Proxy, *warnings) {
	t.Helper()
	p, err := s3test.NewProxy(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	w := &warnings{}
	o := srv.Options()
	o.Endpoint, o.PartSize, o.Concurrency, o.ConditionalWrites, o.Log = p.URL, partSize, 4, mode, w
	o.VerdictDir = t.TempDir()
	for _, f := range configure {
		f(&o)
	}
	store, err := s3.New(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	return store, p, w
}

// warnings collects a store's warnings or info lines.
type warnings = s3.Logged

func random(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// creates returns the conditional headers of the requests that create objects.
func creates(p *s3test.Proxy) (puts, completes []string) {
	for _, r := range p.Requests() {
		switch {
		case r.Method == http.MethodPut && !r.Query.Has("uploadId") && !r.Query.Has("partNumber"):
			puts = append(puts, r.Header.Get("If-None-Match"))
		case r.Method == http.MethodPost && r.Query.Has("uploadId"):
			completes = append(completes, r.Header.Get("If-None-Match"))
		}
	}
	return puts, completes
}

func TestConditionalCreatesSendIfNoneMatch(t *testing.T) {
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		store, p, _ := proxied(t, srv, s3.ConditionalOn)
		small, large := random(t, 1000), random(t, 2*partSize+7)

		for _, body := range [][]byte{small, large} {
			res, err := store.Upload(t.Context(), fmt.Sprintf("cond/%d", len(body)), bytes.NewReader(body), s3.PutOptions{})
			if err != nil || !res.Stored {
				t.Fatalf("upload: %+v, %v", res, err)
			}
		}
		puts, completes := creates(p)
		if strings.Join(puts, ",") != "*" || strings.Join(completes, ",") != "*" {
			t.Fatalf("If-None-Match on PutObject %q, on CompleteMultipartUpload %q; want * on each", puts, completes)
		}

		// A second writer of the same keys loses, and the objects keep their content.
		for _, body := range [][]byte{small, large} {
			key := fmt.Sprintf("cond/%d", len(body))
			res, err := store.Upload(t.Context(), key, bytes.NewReader(random(t, len(body))), s3.PutOptions{})
			if err != nil || res.Stored {
				t.Fatalf("second conditional upload of %s: %+v, %v; want not stored, no error", key, res, err)
			}
			if got := download(t, store, key); !bytes.Equal(got, body) {
				t.Fatalf("%s was overwritten", key)
			}
		}
		noUploadsLeft(t, srv)

		// force: a plain overwrite, without the header.
		before := len(p.Requests())
		res, err := store.Upload(t.Context(), "cond/1000", bytes.NewReader([]byte("new")), s3.PutOptions{Overwrite: true})
		if err != nil || !res.Stored {
			t.Fatalf("overwrite: %+v, %v", res, err)
		}
		r := slices.DeleteFunc(p.Requests()[before:], func(r s3test.Request) bool { return r.Query.Has("uploads") }) // the stale-upload check
		if len(r) != 1 || r[0].Header.Get("If-None-Match") != "" {
			t.Fatalf("overwrite sent %+v", r)
		}
		if got := download(t, store, "cond/1000"); string(got) != "new" {
			t.Fatalf("after overwrite: %q", got)
		}
	})
}

// An endpoint that answers 501 to If-None-Match gets a HEAD and a plain write, with one warning.
func TestNotImplementedFallsBackToHeadThenWrite(t *testing.T) {
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		store, p, warn := proxied(t, srv, s3.ConditionalOn)
		p.Intercept(func(r *http.Request) (int, string, bool) {
			return http.StatusNotImplemented, "NotImplemented", r.Header.Get("If-None-Match") != ""
		})
		for i, size := range []int{100, 2*partSize + 1} {
			key := fmt.Sprintf("nocond/%d", i)
			res, err := store.Upload(t.Context(), key, bytes.NewReader(random(t, size)), s3.PutOptions{})
			if err != nil || !res.Stored {
				t.Fatalf("upload to a 501 endpoint: %+v, %v", res, err)
			}
			// The object exists now: a second save finds it with HEAD and leaves it alone.
			res, err = store.Upload(t.Context(), key, bytes.NewReader(random(t, size)), s3.PutOptions{})
			if err != nil || res.Stored {
				t.Fatalf("second upload to a 501 endpoint: %+v, %v", res, err)
			}
		}
		if w := warn.Warnings(); len(w) != 1 || !strings.Contains(w[0], "501 Not Implemented") {
			t.Fatalf("warnings %q, want one about 501", w)
		}
		noUploadsLeft(t, srv)
	})
}

func TestConflictIsReported(t *testing.T) {
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		store, p, _ := proxied(t, srv, s3.ConditionalOn)
		p.Intercept(func(r *http.Request) (int, string, bool) {
			return http.StatusConflict, "ConditionalRequestConflict", r.Method == http.MethodPost && r.URL.Query().Has("uploadId")
		})
		_, err := store.Upload(t.Context(), "conflict", bytes.NewReader(random(t, partSize+1)), s3.PutOptions{})
		if !errors.Is(err, s3.ErrConflict) {
			t.Fatalf("err = %v, want ErrConflict", err)
		}
		noUploadsLeft(t, srv) // the conflicting upload was aborted
	})
}

// A server that stops answering mid-transfer is detected by the stall timeout, not waited on.
func TestStalledTransfersAreCancelled(t *testing.T) {
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		p, err := s3test.NewProxy(srv.Endpoint)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		o := srv.Options()
		o.Endpoint, o.StallTimeout, o.ConditionalWrites, o.PartSize = p.URL, time.Second, s3.ConditionalOn, partSize
		store, err := s3.New(t.Context(), o)
		if err != nil {
			t.Fatal(err)
		}
		body := random(t, 3*partSize)
		if _, err := store.Upload(t.Context(), "stall", bytes.NewReader(body), s3.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		obj, err := store.Head(t.Context(), "stall")
		if err != nil {
			t.Fatal(err)
		}
		p.Throttle(1) // one byte a second: no chunk arrives within the stall timeout
		start := time.Now()
		rc := store.Open(t.Context(), obj)
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err == nil || !strings.Contains(err.Error(), "stalled") {
			t.Fatalf("download through a wedged endpoint: %v; want a stall error", err)
		}
		if el := time.Since(start); el > 30*time.Second {
			t.Fatalf("gave up after %s", el)
		}
	})
}

func download(t *testing.T, store *s3.Store, key string) []byte {
	t.Helper()
	obj, err := store.Head(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	rc := store.Open(t.Context(), obj)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func noUploadsLeft(t *testing.T, srv *s3test.Server) {
	t.Helper()
	out, err := srv.Client().ListMultipartUploads(t.Context(), &awss3.ListMultipartUploadsInput{Bucket: aws.String(srv.Bucket)})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Uploads) != 0 {
		t.Fatalf("%d multipart uploads left behind", len(out.Uploads))
	}
}

func TestProbe(t *testing.T) {
	for _, tc := range []struct {
		kind string
		want s3.Verdict
	}{
		{s3test.Versitygw, s3.Verdict{Put: true, Multipart: true}},
		{s3test.MinIO, s3.Verdict{Put: true, Multipart: true}},
		{s3test.GoFakeS3, s3.Verdict{Put: true, Multipart: false}},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			var srv *s3test.Server
			if tc.kind == s3test.GoFakeS3 {
				srv = s3test.StartFake(t)
			} else {
				srv = s3test.StartT(t, tc.kind)
			}
			o := srv.Options()
			o.ProbePrefix = "pre/"
			store, err := s3.New(t.Context(), o)
			if err != nil {
				t.Fatal(err)
			}
			v, err := store.Probe(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if v.Put != tc.want.Put || v.Multipart != tc.want.Multipart {
				t.Fatalf("probe of %s = %+v, want %+v", tc.kind, v, tc.want)
			}
			out, err := srv.Client().ListObjectsV2(t.Context(), &awss3.ListObjectsV2Input{Bucket: aws.String(srv.Bucket)})
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Contents) != 0 {
				t.Fatalf("probe left %d objects behind", len(out.Contents))
			}
			noUploadsLeft(t, srv)
		})
	}
}

// In auto mode an endpoint without conditional multipart completes is probed once, said once,
// and remembered on the agent; saves still succeed and never overwrite.
func TestAutoModeOnAnEndpointWithoutConditionalCompletes(t *testing.T) {
	srv := s3test.StartFake(t)
	verdicts := t.TempDir()
	newStore := func(w *warnings) *s3.Store {
		o := srv.Options()
		o.VerdictDir, o.PartSize, o.Log = verdicts, partSize, w
		store, err := s3.New(t.Context(), o)
		if err != nil {
			t.Fatal(err)
		}
		return store
	}
	first := &warnings{}
	store := newStore(first)
	body := random(t, 2*partSize+1)
	for range 2 {
		if _, err := store.Upload(t.Context(), "auto/big", bytes.NewReader(body), s3.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := store.Upload(t.Context(), "auto/big", bytes.NewReader(random(t, 2*partSize+1)), s3.PutOptions{})
	if err != nil || res.Stored {
		t.Fatalf("upload over an existing object: %+v, %v; want it left alone", res, err)
	}
	if got := download(t, store, "auto/big"); !bytes.Equal(got, body) {
		t.Fatal("the object was overwritten")
	}
	if w := first.Warnings(); len(w) != 1 || !strings.Contains(w[0], "does not honour conditional writes") {
		t.Fatalf("warnings %q, want exactly one about conditional writes", w)
	}

	// Another job on the same agent trusts the cached verdict: no probe, no warning.
	second := &warnings{}
	if _, err := newStore(second).Upload(t.Context(), "auto/other", bytes.NewReader(body), s3.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if w := second.Warnings(); len(w) != 0 {
		t.Fatalf("second job warned %q", w)
	}
}

// A download cancelled midway ends with the cancellation, never with a clean end of file.
func TestCancelledDownloadIsNotAnEnd(t *testing.T) {
	srv := s3test.StartT(t, s3test.Versitygw)
	store, p, _ := proxied(t, srv, s3.ConditionalOn)
	if _, err := store.Upload(t.Context(), "cancel", bytes.NewReader(random(t, 4*partSize)), s3.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	obj, err := store.Head(t.Context(), "cancel")
	if err != nil {
		t.Fatal(err)
	}
	p.Throttle(8 << 20)
	ctx, cancel := context.WithCancel(t.Context())
	rc := store.Open(ctx, obj)
	defer rc.Close()
	buf := make([]byte, 1<<20)
	if _, err := io.ReadFull(rc, buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	n, err := io.Copy(io.Discard, rc)
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("read %d more bytes, then %v; want context.Canceled", n, err)
	}
}

// isComplete and isPut match the requests that create an object.
func isComplete(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Query().Has("uploadId")
}
func isPut(r *http.Request) bool {
	return r.Method == http.MethodPut && !r.URL.Query().Has("uploadId") && !r.URL.Query().Has("partNumber")
}

func isPart(r *http.Request) bool {
	return r.Method == http.MethodPut && r.URL.Query().Has("partNumber")
}

// flipped is a request body whose byte at offset at arrives inverted: damage on the way that
// the TCP checksum missed.
type flipped struct {
	r  io.ReadCloser
	at int64
	n  int64
}

func (f *flipped) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if i := f.at - f.n; i >= 0 && i < int64(n) {
		p[i] ^= 0xff
	}
	f.n += int64(n)
	return n, err
}

func (f *flipped) Close() error { return f.r.Close() }

// A body damaged on its way is refused by the server, which checks it against the payload hash
// the request was signed with; the part or object is sent again from its buffer, and the object
// stored is the one uploaded.
func TestDamagedBodiesAreSentAgain(t *testing.T) {
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		for _, tc := range []struct {
			name  string
			size  int
			match func(*http.Request) bool
		}{
			{"PutObject", 1000, isPut},
			{"UploadPart", 2*partSize + 1, isPart},
		} {
			t.Run(tc.name, func(t *testing.T) {
				store, p, _ := proxied(t, srv, s3.ConditionalOn)
				var mu sync.Mutex
				sent := 0
				p.OnRequest(func(r *http.Request) {
					if !tc.match(r) {
						return
					}
					mu.Lock()
					defer mu.Unlock()
					if sent++; sent == 1 {
						r.Body = &flipped{r: r.Body, at: 500}
					}
				})
				key, body := "damaged/"+tc.name, random(t, tc.size)
				res, err := store.Upload(t.Context(), key, bytes.NewReader(body), s3.PutOptions{})
				if err != nil || !res.Stored {
					t.Fatalf("upload with a damaged %s: %+v, %v; want stored", tc.name, res, err)
				}
				if mu.Lock(); sent < 2 {
					t.Fatalf("%s sent %d time(s), want it sent again", tc.name, sent)
				}
				mu.Unlock()
				if got := download(t, store, key); !bytes.Equal(got, body) {
					t.Fatal("the object is not the upload's")
				}
				noUploadsLeft(t, srv)
			})
		}
	})
}

// A create whose response is lost is retried by the SDK; the retry finds the object the first
// attempt stored, and the upload must say it stored it. The retry's answer is the server's own,
// or what AWS answers: 412 (If-None-Match: * and the object exists) or NoSuchUpload (a Complete
// of an upload completed already).
func TestLostResponseOfACreateIsStillStored(t *testing.T) {
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		for _, tc := range []struct {
			name  string
			size  int
			match func(*http.Request) bool
			retry string // the error code the retry is answered with; "": the server's answer
		}{
			{"PutObject", 1000, isPut, ""},
			{"PutObject 412", 1000, isPut, "PreconditionFailed"},
			{"Complete", 2*partSize + 1, isComplete, ""},
			{"Complete 412", 2*partSize + 1, isComplete, "PreconditionFailed"},
			{"Complete NoSuchUpload", 2*partSize + 1, isComplete, "NoSuchUpload"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				store, p, _ := proxied(t, srv, s3.ConditionalOn)
				var mu sync.Mutex
				sent := 0
				p.Intercept(func(r *http.Request) (int, string, bool) {
					if !tc.match(r) {
						return 0, "", false
					}
					mu.Lock()
					defer mu.Unlock()
					sent++
					status := map[string]int{"PreconditionFailed": http.StatusPreconditionFailed, "NoSuchUpload": http.StatusNotFound}[tc.retry]
					return status, tc.retry, sent > 1 && tc.retry != ""
				})
				p.DropResponse(tc.match)
				key, body := "lost/"+strings.ReplaceAll(tc.name, " ", "-"), random(t, tc.size)
				res, err := store.Upload(t.Context(), key, bytes.NewReader(body), s3.PutOptions{})
				if mu.Lock(); sent < 2 {
					t.Fatalf("%s sent %d time(s); the test needs the SDK to retry it", tc.name, sent)
				}
				mu.Unlock()
				if err != nil || !res.Stored {
					t.Fatalf("upload whose %s response was lost: %+v, %v; want stored", tc.name, res, err)
				}
				if got := download(t, store, key); !bytes.Equal(got, body) {
					t.Fatal("the object is not the upload's")
				}
				noUploadsLeft(t, srv)
			})
		}
	})
}

// A Complete whose 200 answer is cut short (the SDK cannot read it and does not retry) created
// the object all the same: the upload is reported as stored, and nothing is left behind.
func TestCutAnswerOfACompleteIsStillStored(t *testing.T) {
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		store, p, _ := proxied(t, srv, s3.ConditionalOn)
		p.InjectFaults(func(r *http.Request) s3test.Fault {
			if isComplete(r) {
				return s3test.Truncate
			}
			return s3test.NoFault
		}, 0)
		key, body := "cut/complete", random(t, 2*partSize+1)
		res, err := store.Upload(t.Context(), key, bytes.NewReader(body), s3.PutOptions{})
		if n := p.FaultCounts()[s3test.Truncate]; n == 0 {
			t.Fatal("no answer was cut: the test needs one")
		}
		if err != nil || !res.Stored {
			t.Fatalf("upload whose Complete answer was cut: %+v, %v; want stored", res, err)
		}
		if got := download(t, store, key); !bytes.Equal(got, body) {
			t.Fatal("the object is not the upload's")
		}
		noUploadsLeft(t, srv)
	})
}

// With the README's policy (no s3:GetObjectVersion) a GET of a version is denied with 403. A
// download on a versioned bucket goes on pinned by ETag alone, and says so once.
func TestDeniedVersionGetsFallBackToETagPinning(t *testing.T) {
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		_, err := srv.Client().PutBucketVersioning(t.Context(), &awss3.PutBucketVersioningInput{
			Bucket:                  aws.String(srv.Bucket),
			VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled},
		})
		if err != nil {
			t.Fatal(err)
		}
		info := &warnings{}
		// Concurrency 2: 4 ranges in flight, so the last of the 6 is fetched after the overwrite.
		store, p, _ := proxied(t, srv, s3.ConditionalOn, func(o *s3.Options) { o.Log, o.Concurrency = info, 2 })
		p.Intercept(func(r *http.Request) (int, string, bool) {
			return http.StatusForbidden, "AccessDenied", r.Method == http.MethodGet && r.URL.Query().Has("versionId")
		})
		body := random(t, 6*partSize)
		if _, err := store.Upload(t.Context(), "versioned", bytes.NewReader(body), s3.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		obj, err := store.Head(t.Context(), "versioned")
		if err != nil || obj.VersionID == "" {
			t.Fatalf("head on a versioned bucket: %+v, %v; want a version ID", obj, err)
		}
		read := func() ([]byte, error) {
			rc := store.Open(t.Context(), obj)
			defer rc.Close()
			return io.ReadAll(rc)
		}
		if got, err := read(); err != nil || !bytes.Equal(got, body) {
			t.Fatalf("download with versionId denied: %d bytes, %v; want the object", len(got), err)
		}
		if msgs := info.Infos(); len(msgs) != 1 || !strings.Contains(msgs[0], "s3:GetObjectVersion") {
			t.Fatalf("info lines %q; want one naming s3:GetObjectVersion", msgs)
		}

		// The next download asks for no version, and every range is pinned by If-Match: an
		// overwrite mid-download is noticed.
		before := len(p.Requests())
		rc := store.Open(t.Context(), obj)
		defer rc.Close()
		if _, err := io.ReadFull(rc, make([]byte, partSize)); err != nil { // the first chunk only
			t.Fatal(err)
		}
		if _, err := store.Upload(t.Context(), "versioned", bytes.NewReader(random(t, len(body))), s3.PutOptions{Overwrite: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); !errors.Is(err, s3.ErrChanged) {
			t.Fatalf("download of an object overwritten midway: %v; want ErrChanged", err)
		}
		for _, r := range p.Requests()[before:] {
			if r.Method == http.MethodGet && r.Path == "/cache/versioned" && (r.Query.Has("versionId") || r.Header.Get("If-Match") != obj.ETag) {
				t.Fatalf("GET %s?%s with If-Match %q; want no versionId and If-Match %s", r.Path, r.Query.Encode(), r.Header.Get("If-Match"), obj.ETag)
			}
		}
		if len(info.Infos()) != 1 {
			t.Fatalf("info lines %q; want the fallback said once", info.Infos())
		}
	})
}

// A save aborts the incomplete multipart uploads of its own key started over a day ago (a job
// killed with its machine), and leaves a younger one (a live job's) and other keys' alone.
func TestStaleUploadsOfTheKeyAreAborted(t *testing.T) {
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		client := srv.Client()
		create := func(key string) string {
			out, err := client.CreateMultipartUpload(t.Context(), &awss3.CreateMultipartUploadInput{Bucket: aws.String(srv.Bucket), Key: aws.String(key)})
			if err != nil {
				t.Fatal(err)
			}
			return aws.ToString(out.UploadId)
		}
		uploads := func() map[string]time.Time {
			out, err := client.ListMultipartUploads(t.Context(), &awss3.ListMultipartUploadsInput{Bucket: aws.String(srv.Bucket)})
			if err != nil {
				t.Fatal(err)
			}
			m := map[string]time.Time{}
			for _, u := range out.Uploads {
				m[aws.ToString(u.UploadId)] = aws.ToTime(u.Initiated)
			}
			return m
		}
		const key = "stale/key"
		old, otherKey := create(key), create(key+"-other")
		time.Sleep(2 * time.Second) // initiation times may have a resolution of a second
		fresh := create(key)
		initiated := uploads()
		if !initiated[fresh].After(initiated[old]) {
			t.Fatalf("uploads initiated at %v and %v: the test needs the second one later", initiated[old], initiated[fresh])
		}
		// A clock a day after the middle of the two: the old upload is stale, the fresh one not.
		now := initiated[old].Add(initiated[fresh].Sub(initiated[old])/2 + 24*time.Hour)

		info := &warnings{}
		o := srv.Options()
		o.Log = info
		store, err := s3.New(t.Context(), o)
		if err != nil {
			t.Fatal(err)
		}
		s3.SetNow(store, func() time.Time { return now })
		if res, err := store.Upload(t.Context(), key, bytes.NewReader([]byte("cache")), s3.PutOptions{}); err != nil || !res.Stored {
			t.Fatalf("upload: %+v, %v", res, err)
		}
		left := uploads()
		if _, ok := left[old]; ok || len(left) != 2 {
			t.Fatalf("uploads left %v; want the stale one of %s aborted, the fresh one (%s) and %s-other's (%s) kept", left, key, fresh, key, otherKey)
		}
		if _, ok := left[fresh]; !ok {
			t.Fatalf("the fresh upload of a live job was aborted")
		}
		if msgs := info.Infos(); len(msgs) != 1 || !strings.Contains(msgs[0], "Aborted 1 incomplete multipart upload(s) of stale/key") {
			t.Fatalf("info lines %q; want one saying how many were aborted", msgs)
		}
		for id, k := range map[string]string{fresh: key, otherKey: key + "-other"} {
			_, _ = client.AbortMultipartUpload(t.Context(), &awss3.AbortMultipartUploadInput{Bucket: aws.String(srv.Bucket), Key: aws.String(k), UploadId: aws.String(id)})
		}
	})
}
