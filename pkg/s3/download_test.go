package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The fast layer: the download flows against the recording fake, in milliseconds.

// stored puts a random object of size at key and returns it as Head sees it.
func stored(t *testing.T, f *fakeS3, s *testStore, key string, size int) ([]byte, Object) {
	t.Helper()
	body := randomBytes(size)
	f.put(key, body)
	obj, err := s.Head(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	return body, obj
}

func readAll(s *testStore, ctx context.Context, obj Object) ([]byte, error) {
	rc := s.Open(ctx, obj)
	defer rc.Close()
	return io.ReadAll(rc)
}

// Every range is asked for once, pinned to the ETag, and the bytes come back in order.
func TestDownloadRanges(t *testing.T) {
	for _, size := range []int{1, testPart, 10*testPart + 3} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			f := newFake()
			s := newTestStore(t, f)
			body, obj := stored(t, f, s, "k", size)
			got, err := readAll(s, t.Context(), obj)
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("download: %d bytes, %v", len(got), err)
			}
			var ranges []string
			for _, c := range f.recorded("GetObject") {
				if c.ifMatch != obj.ETag {
					t.Fatalf("GET with If-Match %q, want %s", c.ifMatch, obj.ETag)
				}
				ranges = append(ranges, c.rng)
			}
			var want []string
			for off := 0; off < size; off += testPart {
				want = append(want, fmt.Sprintf("bytes=%d-%d", off, min(off+testPart, size)-1))
			}
			slices.Sort(ranges)
			slices.Sort(want)
			if !slices.Equal(ranges, want) {
				t.Fatalf("ranges %v, want %v", ranges, want)
			}
		})
	}
}

// A range whose transport fails (a reset, a body cut short, a stall) is tried again after a
// growing back-off, up to rangeAttempts times; the object changing is never retried.
func TestRangeAttempts(t *testing.T) {
	const ms = time.Millisecond
	for _, tc := range []struct {
		name   string
		faults []fault // the fates of the third range's attempts; then none
		tries  int
		waits  []time.Duration
		err    error // nil: the download succeeds
	}{
		{"reset then cut", []fault{{lost: true}, {cutAt: 10}}, 3, []time.Duration{200 * ms, 800 * ms}, nil},
		{"stalled", []fault{{hang: true}}, 2, []time.Duration{200 * ms}, nil},
		{"5xx every time", []fault{{status: 500, code: "InternalError"}, {status: 503, code: "SlowDown"}, {lost: true}, {cutAt: 1}}, 4,
			[]time.Duration{200 * ms, 800 * ms, 1800 * ms}, errAny},
		{"changed", []fault{{status: 412, code: "PreconditionFailed"}}, 1, nil, ErrChanged},
		{"gone", []fault{{status: 404, code: "NoSuchKey"}}, 1, nil, ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			s := newTestStore(t, f, func(o *Options) { o.StallTimeout = 20 * time.Millisecond })
			body, obj := stored(t, f, s, "k", 5*testPart)
			third := fmt.Sprintf("bytes=%d-%d", 2*testPart, 3*testPart-1)
			tries := 0
			f.fault = func(c call) fault {
				if c.op != "GetObject" || c.rng != third {
					return fault{}
				}
				tries++
				if tries <= len(tc.faults) {
					return tc.faults[tries-1]
				}
				return fault{}
			}
			got, err := readAll(s, t.Context(), obj)
			switch {
			case tc.err == nil && (err != nil || !bytes.Equal(got, body)):
				t.Fatalf("download: %d bytes, %v; want the object", len(got), err)
			case tc.err == errAny && (err == nil || !strings.Contains(err.Error(), "get k bytes "+strings.TrimPrefix(third, "bytes="))):
				t.Fatalf("download: %v; want the range's error", err)
			case tc.err != nil && tc.err != errAny && !errors.Is(err, tc.err):
				t.Fatalf("download: %v; want %v", err, tc.err)
			}
			if tries != tc.tries || !slices.Equal(s.waited(), tc.waits) {
				t.Fatalf("range tried %d times after waits %v; want %d after %v", tries, s.waited(), tc.tries, tc.waits)
			}
		})
	}
}

// An object replaced or removed midway fails the download with ErrChanged or ErrNotFound, never
// with bytes of two objects: If-Match, and the ETag and size the endpoint says it served.
func TestObjectChangesMidDownload(t *testing.T) {
	for _, tc := range []struct {
		name          string
		ignoreIfMatch bool
		change        func(f *fakeS3, obj Object)
		want          error
		guard         string // in the error: which check caught it
	}{
		{"replaced", false, func(f *fakeS3, _ Object) { f.put("k", randomBytes(10*testPart)) }, ErrChanged, "If-Match"},
		{"replaced where If-Match is ignored", true, func(f *fakeS3, _ Object) { f.put("k", randomBytes(10*testPart)) }, ErrChanged, "expected"},
		{"truncated under the same ETag where If-Match is ignored", true, func(f *fakeS3, obj Object) {
			f.mu.Lock()
			defer f.mu.Unlock()
			o := f.objects["k"]
			o.data = o.data[:9*testPart] // the Content-Range names another size
			f.objects["k"] = o
		}, ErrChanged, fmt.Sprintf("size %d, expected %d", 9*testPart, 10*testPart)},
		{"removed", false, func(f *fakeS3, _ Object) { f.remove("k") }, ErrNotFound, "get k"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.ignoreIfMatch = tc.ignoreIfMatch
			s := newTestStore(t, f, func(o *Options) { o.Concurrency = 2 })
			_, obj := stored(t, f, s, "k", 10*testPart)
			rc := s.Open(t.Context(), obj)
			defer rc.Close()
			// The first chunk, while at most concurrency + 1 of the 10 were fetched.
			if _, err := io.ReadFull(rc, make([]byte, testPart)); err != nil {
				t.Fatal(err)
			}
			tc.change(f, obj)
			if _, err := io.Copy(io.Discard, rc); !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.guard) {
				t.Fatalf("download: %v; want %v (%s)", err, tc.want, tc.guard)
			}
		})
	}
}

// A download cancelled midway ends with the cancellation, never with a clean end of file.
func TestCancelledDownloadEndsWithTheCancellation(t *testing.T) {
	f := newFake()
	s := newTestStore(t, f, func(o *Options) { o.Concurrency = 2 })
	_, obj := stored(t, f, s, "k", 10*testPart)
	ctx, cancel := context.WithCancel(t.Context())
	rc := s.Open(ctx, obj)
	defer rc.Close()
	if _, err := io.ReadFull(rc, make([]byte, testPart)); err != nil {
		t.Fatal(err)
	}
	cancel()
	if n, err := io.Copy(io.Discard, rc); !errors.Is(err, context.Canceled) {
		t.Fatalf("read %d more bytes, then %v; want context.Canceled", n, err)
	}
}

// On a versioned bucket ranges carry the version ID; where a GET of a version is denied (no
// s3:GetObjectVersion) the store says so once and pins by If-Match alone from then on.
func TestDeniedVersionGetsFallBackToIfMatch(t *testing.T) {
	f := newFake()
	f.versioned = true
	s := newTestStore(t, f)
	body, obj := stored(t, f, s, "k", 4*testPart)
	if obj.VersionID == "" {
		t.Fatal("no version ID on a versioned bucket")
	}
	got, err := readAll(s, t.Context(), obj)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("download: %d bytes, %v", len(got), err)
	}
	for _, c := range f.recorded("GetObject") {
		if c.version != obj.VersionID || c.ifMatch != obj.ETag {
			t.Fatalf("GET %+v; want version %s and If-Match %s", c, obj.VersionID, obj.ETag)
		}
	}

	f.fault = func(c call) fault {
		if c.op == "GetObject" && c.version != "" {
			return fault{status: 403, code: "AccessDenied"}
		}
		return fault{}
	}
	for range 2 {
		before := len(f.recorded())
		got, err := readAll(s, t.Context(), obj)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("download with versions denied: %d bytes, %v", len(got), err)
		}
		plain := slices.DeleteFunc(f.recorded()[before:], func(c call) bool { return c.version != "" })
		if len(plain) != 4 || slices.ContainsFunc(plain, func(c call) bool { return c.ifMatch != obj.ETag }) {
			t.Fatalf("GETs without version %+v; want one per range, each with If-Match", plain)
		}
	}
	if msgs := s.log.Infos(); len(msgs) != 1 || !strings.Contains(msgs[0], "s3:GetObjectVersion") {
		t.Fatalf("info lines %q; want one naming s3:GetObjectVersion", msgs)
	}
}

func TestRangesFor(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		size        int64
		concurrency int
		partSize    int64
		ranges      int
		chunk       int64
	}{
		{0, 8, 8 * mib, 8, mib},                 // empty: no range is fetched anyway
		{100, 8, 8 * mib, 8, mib},               // tiny: one range of the smallest size
		{20 * mib, 8, 8 * mib, 8, 20 * mib / 8}, // small: every connection
		{8*mib + 1, 8, 8 * mib, 8, mib + 1},     // rounded up, so 8 ranges hold it
		{64 * mib, 8, 8 * mib, 8, 8 * mib},      // 8 whole parts
		{5 << 30, 8, 8 * mib, 8, 8 * mib},       // large: the part size bounds memory
		{100 * mib, 2, 32 * mib, 2, 32 * mib},   // configured
		{1 << 30, 32, 32 * mib, 32, 32 * mib},   // configured, large
		{3 * mib, 1, 5 * mib, 1, 3 * mib},       // one connection
	} {
		ranges, chunk := rangesFor(tc.size, tc.concurrency, tc.partSize)
		if ranges != tc.ranges || chunk != tc.chunk {
			t.Errorf("rangesFor(%d, %d, %d) = %d, %d; want %d, %d", tc.size, tc.concurrency, tc.partSize, ranges, chunk, tc.ranges, tc.chunk)
		}
		if chunk > tc.partSize {
			t.Errorf("rangesFor(%d, %d, %d): chunk %d is larger than the part size", tc.size, tc.concurrency, tc.partSize, chunk)
		}
	}
}

// A download fetches initialWindow chunks ahead of its reader while the reader is the slower
// one, holding that many buffers; a reader that has to wait for chunks widens the window, one
// chunk per wait, up to ranges fetched at once.
func TestDownloadWindow(t *testing.T) {
	const chunk, chunks, ranges = 16, 40, 4
	body := randomBytes(chunk * chunks)
	for _, tc := range []struct {
		name        string
		slowLink    bool // every GET takes a while: the reader waits for chunks
		maxInFlight int  // GETs at once, at most
		maxBuffers  int
	}{
		{"the reader is slower", false, initialWindow, initialWindow},
		{"the link is slower", true, ranges, ranges + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var (
				mu                                 sync.Mutex
				started, delivered, inFlight, most int
				buffers                            = map[*byte]bool{}
			)
			get := func(ctx context.Context, off, end int64, buf []byte) ([]byte, error) {
				mu.Lock()
				started, inFlight = started+1, inFlight+1
				most = max(most, inFlight)
				buffers[&buf[:1][0]] = true
				mu.Unlock()
				if tc.slowLink {
					time.Sleep(2 * time.Millisecond)
				}
				copy(buf, body[off:end+1])
				mu.Lock()
				inFlight--
				mu.Unlock()
				return buf, nil
			}
			rr := startRanges(t.Context(), int64(len(body)), ranges, chunk, get, func() {
				mu.Lock()
				delivered++
				mu.Unlock()
			})
			defer rr.Close()
			var got []byte
			p := make([]byte, chunk)
			for k := 0; ; k++ {
				// A slower reader reads chunk k once chunks up to k+1 are ready: the fetches the
				// initial window allows while the reader still holds chunk k-1. Every reader
				// waits for the first chunk, which says nothing about the link.
				for deadline := time.Now().Add(10 * time.Second); !tc.slowLink && k > 0; time.Sleep(100 * time.Microsecond) {
					mu.Lock()
					ready := delivered == started && delivered >= min(k+1, chunks)
					mu.Unlock()
					if ready {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("chunk %d: the fetches did not get ahead", k)
					}
				}
				n, err := rr.Read(p)
				got = append(got, p[:n]...)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(got, body) {
				t.Fatalf("read %d bytes, not the object", len(got))
			}
			mu.Lock()
			defer mu.Unlock()
			if most > tc.maxInFlight || len(buffers) > tc.maxBuffers {
				t.Errorf("%d GETs at once and %d buffers, want at most %d and %d", most, len(buffers), tc.maxInFlight, tc.maxBuffers)
			}
			if tc.slowLink && most < ranges {
				t.Errorf("at most %d GETs at once: the window did not grow to %d", most, ranges)
			}
			if !tc.slowLink && rr.window != initialWindow {
				t.Errorf("the window grew to %d chunks while the reader was the slower", rr.window)
			}
		})
	}
}
