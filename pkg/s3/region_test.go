package s3

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// The fast layer: finding the bucket's region, and the one retry in it, against the fake.

// signed lists calls as "op region".
func signed(calls []call) []string {
	var s []string
	for _, c := range calls {
		s = append(s, c.op+" "+c.region)
	}
	return s
}

// rejectOutside makes the fake reject every call not signed for region, as S3 does a request
// signed for another region than the bucket's.
func rejectOutside(region string, answer fault) func(call) fault {
	return func(c call) fault {
		if c.region == region {
			return fault{}
		}
		return answer
	}
}

// AWS's answers to a request signed for another region than the bucket's (eu-west-3).
var (
	malformed = fault{status: http.StatusBadRequest, code: "AuthorizationHeaderMalformed",
		message: "The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-west-3'"}
	redirect = fault{status: http.StatusMovedPermanently, code: "PermanentRedirect", bucketRegion: "eu-west-3"}
)

// With no region configured, the Store asks the bucket (HeadBucket) and signs every later
// request for the region the answer names, whatever its status; an answer without the header
// keeps the default, and costs nothing more than the one HeadBucket.
func TestFindRegion(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header string           // HeadBucket's x-amz-bucket-region on a 200
		fault  func(call) fault // the fate of each call
		want   []string         // the calls: HeadBucket's, then a HEAD of an object
		found  bool             // an info line names the region found
	}{
		{name: "200 with the header", header: "eu-west-3",
			want: []string{"HeadBucket us-east-1", "HeadObject eu-west-3"}, found: true},
		{name: "301 with the header", fault: rejectOutside("eu-west-3", redirect),
			want: []string{"HeadBucket us-east-1", "HeadBucket eu-west-3", "HeadObject eu-west-3"}, found: true},
		{name: "403 with the header", fault: func(c call) fault {
			if c.op != "HeadBucket" {
				return fault{}
			}
			return fault{status: http.StatusForbidden, code: "AccessDenied", bucketRegion: "eu-west-3"}
		}, want: []string{"HeadBucket us-east-1", "HeadBucket eu-west-3", "HeadObject eu-west-3"}, found: true},
		{name: "no header (an S3-compatible server)",
			want: []string{"HeadBucket us-east-1", "HeadObject us-east-1"}},
		{name: "the header names the default", header: "us-east-1",
			want: []string{"HeadBucket us-east-1", "HeadObject us-east-1"}},
		{name: "HeadBucket fails without the header", fault: func(c call) fault {
			if c.op != "HeadBucket" {
				return fault{}
			}
			return fault{status: http.StatusNotImplemented, code: "NotImplemented"}
		}, want: []string{"HeadBucket us-east-1", "HeadObject us-east-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.bucketRegion, f.fault = tc.header, tc.fault
			s := newTestStore(t, f)
			s.findRegion(t.Context())
			f.put("k", []byte("body"))
			if _, err := s.Head(t.Context(), "k"); err != nil {
				t.Fatalf("head after finding the region: %v", err)
			}
			if got := signed(f.recorded()); !slices.Equal(got, tc.want) {
				t.Errorf("calls %q, want %q", got, tc.want)
			}
			info := s.log.Infos()
			if tc.found != (len(info) == 1 && strings.Contains(info[0], "bucket cache is in region eu-west-3, not us-east-1")) || len(info) > 1 {
				t.Errorf("info lines %q; want one naming eu-west-3: %v", info, tc.found)
			}
		})
	}
}

// A Store configured with the wrong region (or none, on an endpoint that did not say) sends the
// first request again in the region the rejection names, and every later one there: a save (one
// PUT, or a multipart upload with concurrent parts) and a restore succeed, with one info line.
func TestWrongRegionIsRetriedInTheRightOne(t *testing.T) {
	for _, answer := range []struct {
		name  string
		fault fault
	}{{"400 AuthorizationHeaderMalformed", malformed}, {"301 PermanentRedirect", redirect}} {
		for _, size := range []int{testPart / 2, 5 * testPart} {
			t.Run(fmt.Sprintf("%s/%d bytes", answer.name, size), func(t *testing.T) {
				f := newFake()
				f.fault = rejectOutside("eu-west-3", answer.fault)
				s := newTestStore(t, f)
				body := randomBytes(size)
				res, err := s.Upload(t.Context(), "k", bytes.NewReader(body), PutOptions{})
				if err != nil || !res.Stored {
					t.Fatalf("upload: %v, %+v", err, res)
				}
				if o, _ := f.object("k"); !bytes.Equal(o.data, body) {
					t.Fatalf("stored %d bytes, want the %d sent (a retried body must be rewound)", len(o.data), len(body))
				}
				obj, err := s.Head(t.Context(), "k")
				if err != nil {
					t.Fatal(err)
				}
				got, err := readAll(s, t.Context(), obj)
				if err != nil || !bytes.Equal(got, body) {
					t.Fatalf("download: %v (%d bytes of %d)", err, len(got), len(body))
				}
				calls := f.recorded()
				var wrong []call
				for _, c := range calls {
					if c.region != "eu-west-3" {
						wrong = append(wrong, c)
					}
				}
				// The first request, and the stale-upload sweep that may run beside it, were
				// signed for us-east-1; each was sent again in eu-west-3, and nothing after.
				if len(wrong) == 0 || len(wrong) > 2 {
					t.Fatalf("%d calls signed for another region, want 1 or 2: %q", len(wrong), signed(calls))
				}
				for _, w := range wrong {
					if !slices.ContainsFunc(calls, func(c call) bool { return c.op == w.op && c.key == w.key && c.region == "eu-west-3" }) {
						t.Errorf("%s in us-east-1 was not sent again in eu-west-3: %q", w.op, signed(calls))
					}
				}
				if info := s.log.Infos(); len(info) != 1 || !strings.Contains(info[0], "region eu-west-3") {
					t.Errorf("info lines %q, want one naming eu-west-3", info)
				}
			})
		}
	}
}

// The retry happens once: an answer that names the region the request was signed for, or a
// second answer naming yet another region, is the request's error.
func TestWrongRegionIsRetriedOnce(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(call) fault
		heads int // HEADs of an object, one after the other
		want  []string
	}{
		{name: "the answer names the region signed for", fault: func(call) fault {
			return fault{status: http.StatusBadRequest, code: "InvalidRequest", bucketRegion: "us-east-1"}
		}, heads: 1, want: []string{"HeadObject us-east-1"}},
		{name: "every answer names another region", fault: func(c call) fault {
			other := map[string]string{"us-east-1": "eu-west-3", "eu-west-3": "ap-south-1"}[c.region]
			return fault{status: http.StatusMovedPermanently, code: "PermanentRedirect", bucketRegion: other}
		}, heads: 2, want: []string{"HeadObject us-east-1", "HeadObject eu-west-3", "HeadObject eu-west-3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.fault = tc.fault
			s := newTestStore(t, f)
			for range tc.heads {
				if _, err := s.Head(t.Context(), "k"); err == nil || status(err) == http.StatusNotFound {
					t.Fatalf("head: %v, want the rejection", err)
				}
			}
			if got := signed(f.recorded()); !slices.Equal(got, tc.want) {
				t.Errorf("calls %q, want %q", got, tc.want)
			}
		})
	}
}

// The region a rejection names: its header, else an AuthorizationHeaderMalformed message as AWS
// and versitygw word it.
func TestWrongRegion(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"header", fault{status: 301, code: "PermanentRedirect", bucketRegion: "eu-west-3"}.err("GetObject"), "eu-west-3"},
		{"AWS's message", malformed.err("GetObject"), "eu-west-3"},
		{"versitygw's message", fault{status: 400, code: "AuthorizationHeaderMalformed",
			message: `The authorization header is malformed; the region "us-east-1" is wrong; expecting "ap-south-1"`}.err("PutObject"), "ap-south-1"},
		{"another code with such a message", fault{status: 400, code: "InvalidArgument", message: "expecting 'eu-west-3'"}.err("PutObject"), ""},
		{"a 403 with the header", fault{status: 403, code: "AccessDenied", bucketRegion: "eu-west-3"}.err("GetObject"), "eu-west-3"},
		{"a 403 without the header", fault{status: 403, code: "AccessDenied"}.err("GetObject"), ""},
		{"a 404 with the header", fault{status: 404, code: "NoSuchKey", bucketRegion: "eu-west-3"}.err("GetObject"), ""},
		{"a transport error", transportError("GetObject"), ""},
	} {
		if got := wrongRegion(tc.err); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
