package s3_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/s3test"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/s3"
)

// noRegion empties the SDK's region chain: no AWS_REGION, AWS_DEFAULT_REGION, profile or
// shared config file.
func noRegion(t *testing.T) {
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
}

// inRegion returns a store on srv's bucket (in eu-west-3) behind a RegionServer, with region
// configured ("": none).
func inRegion(t *testing.T, srv *s3test.Server, region string, redirect bool) (*s3.Store, *s3test.RegionServer, *warnings) {
	t.Helper()
	rs, err := s3test.NewRegionServer(srv.Endpoint, "eu-west-3", redirect)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.Close)
	w := &warnings{}
	o := srv.Options()
	o.Endpoint, o.Region, o.PartSize, o.Concurrency, o.ConditionalWrites, o.Log = rs.URL, region, partSize, 4, s3.ConditionalOn, w
	store, err := s3.New(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	return store, rs, w
}

// saveAndRestore uploads a multipart object (at a key of the test's own) and downloads it.
func saveAndRestore(t *testing.T, store *s3.Store) {
	t.Helper()
	body, key := random(t, 2*partSize+1000), "region/"+t.Name()
	res, err := store.Upload(t.Context(), key, bytes.NewReader(body), s3.PutOptions{})
	if err != nil || !res.Stored {
		t.Fatalf("save: %v, %+v", err, res)
	}
	if got := download(t, store, key); !bytes.Equal(got, body) {
		t.Fatalf("restored %d bytes, want %d", len(got), len(body))
	}
}

func describe(reqs []s3test.SignedRequest) string {
	var b strings.Builder
	for _, r := range reqs {
		fmt.Fprintf(&b, "\n  %s %s signed for %q rejected=%v", r.Method, r.Path, r.Region, r.Rejected)
	}
	return b.String()
}

// With no region anywhere, the Store finds the bucket's with HeadBucket before anything else,
// and every later request of a save and a restore is signed for it.
func TestRegionIsFoundWithoutConfiguration(t *testing.T) {
	s3test.Integration(t)
	noRegion(t)
	srv := s3test.StartInRegionT(t, "eu-west-3")
	store, rs, w := inRegion(t, srv, "", false)
	saveAndRestore(t, store)
	reqs := rs.Requests()
	if len(reqs) < 2 || !reqs[0].HeadBucket || reqs[0].Region != "us-east-1" || !reqs[0].Rejected {
		t.Fatalf("the first request is not a HeadBucket signed for the default region:%s", describe(reqs))
	}
	for _, r := range reqs[1:] {
		if r.Region != "eu-west-3" || r.Rejected {
			t.Fatalf("a request after the region was found is not signed for eu-west-3:%s", describe(reqs))
		}
	}
	if info := w.Infos(); len(info) != 1 || !strings.Contains(info[0], "is in region eu-west-3, not us-east-1") {
		t.Errorf("info lines %q, want one naming eu-west-3", info)
	}
}

// With a wrong region configured, no HeadBucket is sent: the first request is rejected (400 with
// the region in its message, or 301 with the header), sent once more in eu-west-3, and every
// later one goes there.
func TestWrongRegionIsRetriedOnceInTheRightOne(t *testing.T) {
	s3test.Integration(t)
	srv := s3test.StartInRegionT(t, "eu-west-3")
	for _, redirect := range []bool{false, true} {
		t.Run(map[bool]string{false: "400", true: "301"}[redirect], func(t *testing.T) {
			store, rs, w := inRegion(t, srv, "us-west-2", redirect)
			saveAndRestore(t, store)
			reqs := rs.Requests()
			rejected := 0
			for _, r := range reqs {
				if r.HeadBucket {
					t.Fatalf("a HeadBucket with a region configured:%s", describe(reqs))
				}
				if r.Rejected {
					rejected++
					if r.Region != "us-west-2" {
						t.Fatalf("a request rejected in %q:%s", r.Region, describe(reqs))
					}
				}
			}
			// The first request, and the stale-upload sweep that may run beside it.
			if rejected < 1 || rejected > 2 || !reqs[0].Rejected {
				t.Fatalf("%d requests rejected, want the first (and at most the sweep beside it):%s", rejected, describe(reqs))
			}
			if info := w.Infos(); len(info) != 1 || !strings.Contains(info[0], "is in region eu-west-3, not us-west-2") {
				t.Errorf("info lines %q, want one naming eu-west-3", info)
			}
		})
	}
}

// Servers that ignore regions (versitygw, MinIO) keep working with no region configured: the
// one HeadBucket succeeds, and nothing else is added.
func TestNoRegionOnAServerThatIgnoresRegions(t *testing.T) {
	noRegion(t)
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		store, p, w := proxied(t, srv, s3.ConditionalOn, func(o *s3.Options) { o.Region = "" })
		saveAndRestore(t, store)
		reqs := p.Requests()
		heads := 0
		for _, r := range reqs {
			if r.Method == http.MethodHead && strings.Count(strings.Trim(r.Path, "/"), "/") == 0 {
				heads++
			}
		}
		if heads != 1 || reqs[0].Method != http.MethodHead {
			t.Errorf("%d HeadBucket requests, want 1 first: %v", heads, reqs)
		}
		if info, warns := w.Infos(), w.Warnings(); len(info)+len(warns) != 0 {
			t.Errorf("logged %q %q, want nothing", info, warns)
		}
	})
}

// A server that checks regions itself (versitygw in eu-west-3) rejects requests signed for the
// default region with its own 400 AuthorizationHeaderMalformed. Its answer to HeadBucket (a HEAD:
// no body, no header) says nothing; the first rejection with a body names the region, and the
// one retry there carries the save and the restore through.
func TestRegionIsFoundOnAServerThatChecksRegions(t *testing.T) {
	noRegion(t)
	srv := s3test.StartInRegionT(t, "eu-west-3")
	store, _, w := proxied(t, srv, s3.ConditionalOn, func(o *s3.Options) { o.Region = "" })
	saveAndRestore(t, store)
	if info := w.Infos(); len(info) != 1 || !strings.Contains(info[0], "is in region eu-west-3, not us-east-1") {
		t.Errorf("info lines %q, want one naming eu-west-3", info)
	}
}
