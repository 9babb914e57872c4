package s3

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// The fast layer: the probe's verdicts and what auto mode does with them.

func TestProbeVerdicts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		setup     func(f *fakeS3)
		want      Verdict
		errPrefix string // "": no error
	}{
		{"honoured", func(*fakeS3) {}, Verdict{Put: true, Multipart: true}, ""},
		{"ignored on Complete", func(f *fakeS3) { f.ignoreINM.complete = true }, Verdict{Put: true}, ""},
		{"ignored everywhere", func(f *fakeS3) { f.ignoreINM.put, f.ignoreINM.complete = true, true }, Verdict{}, ""},
		{"501 on the first create", func(f *fakeS3) {
			f.fault = func(c call) fault {
				if c.ifNoneMatch != "" {
					return fault{status: 501, code: "NotImplemented"}
				}
				return fault{}
			}
		}, Verdict{}, ""},
		{"501 on the second put", func(f *fakeS3) {
			puts := 0
			f.fault = func(c call) fault {
				if c.op == "PutObject" {
					if puts++; puts == 2 {
						return fault{status: 501, code: "NotImplemented"}
					}
				}
				return fault{}
			}
		}, Verdict{Multipart: true}, ""},
		{"put refused", func(f *fakeS3) {
			f.fault = func(c call) fault {
				if c.op == "PutObject" {
					return fault{status: 403, code: "AccessDenied"}
				}
				return fault{}
			}
		}, Verdict{}, "probe PutObject"},
		{"part fails", func(f *fakeS3) {
			f.fault = func(c call) fault {
				if c.op == "UploadPart" {
					return fault{status: 500, code: "InternalError"}
				}
				return fault{}
			}
		}, Verdict{Put: true}, "probe multipart upload"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			tc.setup(f)
			s := newTestStore(t, f, func(o *Options) { o.ProbePrefix = "pre/" })
			v, err := s.Probe(t.Context())
			if (tc.errPrefix == "") != (err == nil) || (err != nil && !strings.HasPrefix(err.Error(), tc.errPrefix)) {
				t.Fatalf("probe: %v; want error %q", err, tc.errPrefix)
			}
			if v.Put != tc.want.Put || v.Multipart != tc.want.Multipart {
				t.Fatalf("probe = %+v, want %+v", v, tc.want)
			}
			for _, c := range f.recorded() {
				if !strings.HasPrefix(c.key, "pre/.s3-cache-probe/") {
					t.Fatalf("probe touched %q", c.key)
				}
			}
			f.mu.Lock()
			left := len(f.objects)
			f.mu.Unlock()
			if left != 0 {
				t.Fatalf("probe left %d objects", left)
			}
			noUploadsLeft(t, f)
		})
	}
}

// In auto mode the first conditional save probes, says once that an endpoint without
// conditional completes saves with HEAD then write, and the verdict is cached for the agent:
// the next store neither probes nor warns. A probe that fails is said, not cached.
func TestAutoMode(t *testing.T) {
	verdicts := t.TempDir()
	auto := func(o *Options) { o.ConditionalWrites, o.VerdictDir = ConditionalAuto, verdicts }
	f := newFake()
	f.ignoreINM.complete = true
	s := newTestStore(t, f, auto)
	body := randomBytes(3 * testPart)
	for range 2 {
		if _, err := s.Upload(t.Context(), "k", bytes.NewReader(body), PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if o, _ := f.object("k"); !bytes.Equal(o.data, body) {
		t.Fatal("the object was overwritten")
	}
	if w := s.log.Warnings(); len(w) != 1 || !strings.Contains(w[0], "does not honour conditional writes") {
		t.Fatalf("warnings %q, want exactly one about conditional writes", w)
	}
	if n := len(f.recorded("HeadObject")); n < 2 {
		t.Fatalf("%d HEADs; want the saves to check with HEAD", n)
	}

	before := len(f.recorded())
	second := newTestStore(t, f, auto)
	if _, err := second.Upload(t.Context(), "k2", bytes.NewReader(body), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range f.recorded()[before:] {
		if strings.Contains(c.key, "probe") {
			t.Fatalf("the second store probed again: %+v", c)
		}
	}
	if w := second.log.Warnings(); len(w) != 0 {
		t.Fatalf("second store warned %q", w)
	}

	// A probe that fails: say so, send the header anyway, cache nothing.
	f = newFake()
	f.fault = func(c call) fault {
		if strings.Contains(c.key, "probe") {
			return fault{status: 500, code: "InternalError"}
		}
		return fault{}
	}
	fresh := func(o *Options) { o.ConditionalWrites = ConditionalAuto }
	s = newTestStore(t, f, fresh)
	if res, err := s.Upload(t.Context(), "k", strings.NewReader("small"), PutOptions{}); err != nil || !res.Stored {
		t.Fatalf("upload: %+v, %v", res, err)
	}
	if puts := f.recorded("PutObject"); puts[len(puts)-1].ifNoneMatch != "*" {
		t.Fatalf("puts %+v; want the save conditional", puts)
	}
	if w := s.log.Warnings(); len(w) != 1 || !strings.Contains(w[0], "could not probe") {
		t.Fatalf("warnings %q", w)
	}
	if cached, _ := os.ReadDir(s.opts.VerdictDir); len(cached) != 0 {
		t.Fatalf("a failed probe's verdict was cached: %v", cached)
	}
}
