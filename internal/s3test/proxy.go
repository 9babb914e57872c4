package s3test

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"
)

// Proxy is a loopback reverse proxy in front of a real server, for the failures a real server
// will not produce on demand: it records requests, can answer some itself (a 501 to a header
// the endpoint "does not implement", a 409 conflict), and can slow bodies down. SigV4
// signatures stay valid: the Host header the client signed is passed through.
type Proxy struct {
	URL string
	srv *httptest.Server

	mu        sync.Mutex
	requests  []Request
	intercept func(*http.Request) (status int, code string, ok bool)
	onRequest func(*http.Request)
	rate      int64 // body bytes per second, both directions; 0: unlimited

	pickFault func(*http.Request) Fault
	stall     time.Duration
	faults    map[Fault]int
	exchanges []Exchange

	// drop matches the request whose response is lost (see DropResponse).
	drop func(*http.Request) bool

	// handlers are the requests being handled: Close waits for them, hijacked ones included,
	// which the server does not track, so that every exchange is recorded.
	handlers sync.WaitGroup
}

// Request is what the proxy saw of a request.
type Request struct {
	Method string
	Path   string
	Query  url.Values
	Header http.Header
}

// NewProxy starts a proxy to target (an http:// endpoint).
func NewProxy(target string) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	p := &Proxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	rp.ErrorLog = log.New(io.Discard, "", 0) // the failures are the point
	rp.ModifyResponse = func(resp *http.Response) error {
		if err := p.faultResponse(resp); err != nil {
			return err
		}
		resp.Body = p.slow(resp.Body)
		return nil
	}
	rp.ErrorHandler = p.proxyError
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.handlers.Add(1)
		defer p.handlers.Done()
		p.mu.Lock()
		p.requests = append(p.requests, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Header: r.Header.Clone()})
		intercept, onRequest := p.intercept, p.onRequest
		p.mu.Unlock()
		x := p.startExchange(r)
		defer p.endExchange(x)
		r = r.WithContext(context.WithValue(r.Context(), exchangeKey{}, x))
		if onRequest != nil {
			onRequest(r)
		}
		if intercept != nil {
			if status, code, ok := intercept(r); ok {
				writeS3Error(w, r, status, code)
				return
			}
		}
		if p.faultRequest(w, r, x) {
			return
		}
		r.Body = p.slow(r.Body)
		if p.dropping(r) {
			rp.ServeHTTP(httptest.NewRecorder(), r)
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
			return
		}
		rp.ServeHTTP(w, r)
	}))
	p.URL = p.srv.URL
	return p, nil
}

// Close stops the proxy once every request it took is handled.
func (p *Proxy) Close() {
	p.srv.CloseClientConnections()
	p.srv.Close()
	p.handlers.Wait()
}

// Requests returns the requests seen so far.
func (p *Proxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.requests...)
}

// Intercept makes the proxy answer requests for which f returns ok with an S3 error.
func (p *Proxy) Intercept(f func(*http.Request) (status int, code string, ok bool)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.intercept = f
}

// OnRequest calls f for every request, before it is forwarded.
func (p *Proxy) OnRequest(f func(*http.Request)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.onRequest = f
}

// DropResponse makes the proxy forward the next request for which f returns true and then close
// the client's connection instead of answering: the request took effect, its response was lost.
func (p *Proxy) DropResponse(f func(*http.Request) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drop = f
}

// dropping tells whether r is the request whose response DropResponse asked to lose.
func (p *Proxy) dropping(r *http.Request) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drop == nil || !p.drop(r) {
		return false
	}
	p.drop = nil
	return true
}

// Throttle limits request and response bodies to bytesPerSecond each (0: unlimited).
func (p *Proxy) Throttle(bytesPerSecond int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rate = bytesPerSecond
}

func (p *Proxy) slow(body io.ReadCloser) io.ReadCloser {
	if body == nil || body == http.NoBody {
		return body
	}
	return &slowBody{ReadCloser: body, p: p}
}

// slowBody delivers at most rate bytes per second, in small reads.
type slowBody struct {
	io.ReadCloser
	p *Proxy
}

func (s *slowBody) Read(b []byte) (int, error) {
	s.p.mu.Lock()
	rate := s.p.rate
	s.p.mu.Unlock()
	if rate <= 0 {
		return s.ReadCloser.Read(b)
	}
	chunk := max(rate/20, 1) // 20 reads a second
	if int64(len(b)) > chunk {
		b = b[:chunk]
	}
	n, err := s.ReadCloser.Read(b)
	time.Sleep(time.Duration(float64(n) / float64(rate) * float64(time.Second)))
	return n, err
}
