package e2e

import (
	"strings"
	"testing"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/s3test"
)

// A job with no region anywhere (no key, no AWS_REGION or AWS_DEFAULT_REGION, no shared config)
// saves to and restores from a bucket in eu-west-3, behind an endpoint that answers as AWS does:
// each hook finds the region with HeadBucket and signs everything after it for eu-west-3.
func TestRegionIsFoundWithNoRegionConfigured(t *testing.T) {
	srv := s3test.StartInRegionT(t, "eu-west-3")
	rs, err := s3test.NewRegionServer(srv.Endpoint, "eu-west-3", false)
	must(t, err)
	t.Cleanup(rs.Close)
	a := newAgent(t)
	job := func(name string) *job {
		j := a.job(srv, name).set("ENDPOINT", rs.URL)
		delete(j.env, "AWS_REGION")
		j.env["AWS_CONFIG_FILE"] = "/dev/null"
		return j
	}

	first := job("first")
	first.fill(12 << 20) // multipart
	out, code := first.run("post-command")
	if code != 0 || !strings.Contains(out, "\nSaved ") || !strings.Contains(out, "bucket cache is in region eu-west-3, not us-east-1") {
		t.Fatalf("save: %d\n%s", code, out)
	}
	second := job("second")
	out, code = second.run("pre-command")
	if code != 0 || !strings.Contains(out, "Cache hit (exact") || !strings.Contains(out, "is in region eu-west-3") {
		t.Fatalf("restore: %d\n%s", code, out)
	}
	if got, want := listing(t, second.cacheDir()), listing(t, first.cacheDir()); got != want {
		t.Fatalf("restored tree differs:\n%s\nwant:\n%s", got, want)
	}

	// Each hook: one HeadBucket signed for the default region, then eu-west-3 only.
	reqs := rs.Requests()
	heads := 0
	for i, r := range reqs {
		if r.HeadBucket && r.Region == "us-east-1" {
			heads++
			continue
		}
		if r.Region != "eu-west-3" || r.Rejected || i == 0 {
			t.Fatalf("request %d (%s %s) signed for %q, rejected %v; want eu-west-3 after a HeadBucket", i, r.Method, r.Path, r.Region, r.Rejected)
		}
	}
	if heads != 2 {
		t.Fatalf("%d HeadBucket requests in the default region, want one per hook", heads)
	}
}
