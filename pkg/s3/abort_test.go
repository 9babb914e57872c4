package s3_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/s3test"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/s3"
)

// A multipart upload that fails is aborted even when the abort itself fails more often than the
// SDK retries a request, and an abort whose answer was lost (so that the SDK's retry finds no
// upload) is not reported as a failure. Either way no upload is left behind.
func TestAbortOnABadLink(t *testing.T) {
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		for _, tc := range []struct {
			name   string
			faults []s3test.Fault // the fates of the abort's attempts, in order; then none
		}{
			{"refused more often than the SDK retries", []s3test.Fault{s3test.SlowDown, s3test.InternalError, s3test.SlowDown, s3test.DropBefore}},
			{"answer lost", []s3test.Fault{s3test.DropAfter}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				store, p, _ := proxied(t, srv, s3.ConditionalOn)
				var mu sync.Mutex
				aborts := 0
				p.InjectFaults(func(r *http.Request) s3test.Fault {
					if r.Method != http.MethodDelete || !r.URL.Query().Has("uploadId") {
						return s3test.NoFault
					}
					mu.Lock()
					defer mu.Unlock()
					aborts++
					if aborts <= len(tc.faults) {
						return tc.faults[aborts-1]
					}
					return s3test.NoFault
				}, time.Second)

				// Two parts, then the archive breaks: the upload must be aborted.
				broken := errors.New("archive broke")
				r := io.MultiReader(bytes.NewReader(random(t, partSize+1000)), &failingReader{broken})
				_, err := store.Upload(t.Context(), "broken/"+strings.ReplaceAll(tc.name, " ", "-"), r, s3.PutOptions{})
				if !errors.Is(err, broken) {
					t.Fatalf("upload: %v, want the archive's error", err)
				}
				if strings.Contains(err.Error(), "abort multipart upload") {
					t.Errorf("upload: %v, want no failure to abort", err)
				}
				noUploadsLeft(t, srv)
			})
		}
	})
}

type failingReader struct{ err error }

func (f *failingReader) Read([]byte) (int, error) { return 0, f.err }
