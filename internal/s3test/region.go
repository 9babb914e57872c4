package s3test

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// StartInRegionT starts versitygw checking signatures against region, for the duration of t.
func StartInRegionT(t *testing.T, region string) *Server {
	t.Helper()
	Integration(t)
	srv, err := StartIn(t.Context(), Versitygw, t.TempDir(), "cache", region)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv
}

// RegionServer is a loopback endpoint in front of a real server in Region (see StartInRegionT)
// that answers like an AWS bucket there: HeadBucket carries x-amz-bucket-region whatever region
// it was signed for (301 when signed for another), and every other request signed for another
// region is rejected, as 400 AuthorizationHeaderMalformed naming the region in its message and a
// <Region> element (no header), or with redirect as 301 PermanentRedirect with the header.
// Requests signed for Region go through to the server.
type RegionServer struct {
	URL    string
	Region string

	srv      *httptest.Server
	mu       sync.Mutex
	requests []SignedRequest
}

// SignedRequest is what the RegionServer saw of a request.
type SignedRequest struct {
	Method, Path string
	HeadBucket   bool
	Region       string // the region of the SigV4 credential scope; "" unsigned
	Rejected     bool
}

// scope finds the region in a SigV4 Authorization header:
// Credential=AKID/20261128/eu-west-3/s3/aws4_request.
var scope = regexp.MustCompile(`Credential=[^/]+/[0-9]+/([^/]+)/s3/aws4_request`)

// NewRegionServer starts a RegionServer in front of target (an http:// endpoint). With redirect,
// wrong-region requests are answered 301 PermanentRedirect instead of 400.
func NewRegionServer(target, region string, redirect bool) (*RegionServer, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	s := &RegionServer{Region: region}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = log.New(io.Discard, "", 0)
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := SignedRequest{Method: r.Method, Path: r.URL.Path,
			HeadBucket: r.Method == http.MethodHead && strings.Count(strings.Trim(r.URL.Path, "/"), "/") == 0}
		if m := scope.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
			req.Region = m[1]
		}
		req.Rejected = req.Region != region
		s.mu.Lock()
		s.requests = append(s.requests, req)
		s.mu.Unlock()
		if req.HeadBucket {
			w.Header().Set("X-Amz-Bucket-Region", region)
		}
		if !req.Rejected {
			rp.ServeHTTP(w, r)
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		if req.HeadBucket || redirect {
			w.Header().Set("X-Amz-Bucket-Region", region)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusMovedPermanently)
			_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>PermanentRedirect</Code>`+
				`<Message>The bucket you are attempting to access must be addressed using the specified endpoint. Please send all future requests to this endpoint.</Message>`+
				`<Endpoint>s3.`+region+`.amazonaws.com</Endpoint></Error>`)
			return
		}
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AuthorizationHeaderMalformed</Code>`+
			`<Message>The authorization header is malformed; the region '`+req.Region+`' is wrong; expecting '`+region+`'</Message>`+
			`<Region>`+region+`</Region></Error>`)
	}))
	s.URL = s.srv.URL
	return s, nil
}

// Close stops the server.
func (s *RegionServer) Close() { s.srv.Close() }

// Requests returns the requests seen so far, in order of arrival.
func (s *RegionServer) Requests() []SignedRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SignedRequest(nil), s.requests...)
}
