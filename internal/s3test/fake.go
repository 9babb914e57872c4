package s3test

import (
	"net/http/httptest"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// GoFakeS3 is the kind of the in-process server that stands for endpoints without full
// conditional-write support: gofakes3 honours If-None-Match on PutObject but ignores it on
// CompleteMultipartUpload, and ignores If-Match on GET.
const GoFakeS3 = "gofakes3"

// StartFake starts an in-process gofakes3 server with one bucket for the test.
func StartFake(t *testing.T) *Server {
	t.Helper()
	Integration(t)
	ts := httptest.NewServer(gofakes3.New(s3mem.New(), gofakes3.WithAutoBucket(true)).Server())
	t.Cleanup(ts.Close)
	s := &Server{Kind: GoFakeS3, Endpoint: ts.URL, Bucket: "cache", Dir: t.TempDir()}
	if err := s.createBucket(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}
