package s3test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"
)

// Fault is a failure the proxy injects into one request (see Proxy.InjectFaults): the failures
// of a real network and a real S3 that a loopback server never produces.
type Fault string

// The faults the proxy can inject.
const (
	NoFault Fault = ""
	// DropBefore closes the client's connection without forwarding the request.
	DropBefore Fault = "drop-before"
	// DropAfter forwards the request, reads the server's whole answer and closes the client's
	// connection without sending it: the server did the work and the client cannot know.
	DropAfter Fault = "drop-after"
	// Stall holds the transfer midway for the proxy's stall duration, or until the client gives
	// up: the request body when there is one, else the response body, else the response headers.
	Stall Fault = "stall"
	// Truncate forwards the request and closes the connection partway through the response
	// body. An answer without a body is dropped instead, and counted as DropAfter.
	Truncate Fault = "truncate"
	// InternalError answers 500 InternalError without forwarding the request.
	InternalError Fault = "500 InternalError"
	// SlowDown answers 503 SlowDown without forwarding the request.
	SlowDown Fault = "503 SlowDown"
)

// Faults lists every fault the proxy can inject.
var Faults = []Fault{DropBefore, DropAfter, Stall, Truncate, InternalError, SlowDown}

// Exchange is what became of one request.
type Exchange struct {
	Request
	Fault      Fault // the fault injected, NoFault for none
	Status     int   // the server's answer; 0 when the request never reached it or it did not answer
	Start, End time.Time
}

// exchangeKey carries a request's *exchange from the handler to the reverse proxy's hooks,
// which run on the handler's goroutine.
type exchangeKey struct{}

type exchange struct {
	Exchange
	stalled bool // the request body is held already: do not stall the answer too
}

// errDropped makes the reverse proxy's error handler close the client's connection.
var errDropped = errors.New("connection dropped by the test proxy")

// InjectFaults makes the proxy inject the fault pick chooses for every request it does not
// intercept (nil: none). A stalled transfer is held for stall.
func (p *Proxy) InjectFaults(pick func(*http.Request) Fault, stall time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pickFault, p.stall = pick, stall
}

// FaultCounts returns how many faults of each kind were injected into finished requests.
func (p *Proxy) FaultCounts() map[Fault]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	counts := make(map[Fault]int, len(p.faults))
	for f, n := range p.faults {
		counts[f] = n
	}
	return counts
}

// Exchanges returns what became of every request that has finished, in the order they ended.
func (p *Proxy) Exchanges() []Exchange {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Exchange(nil), p.exchanges...)
}

func (p *Proxy) startExchange(r *http.Request) *exchange {
	x := &exchange{Exchange: Exchange{
		Request: Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Header: r.Header.Clone()},
		Start:   time.Now(),
	}}
	p.mu.Lock()
	pick := p.pickFault
	p.mu.Unlock()
	if pick != nil {
		x.Fault = pick(r)
	}
	return x
}

func (p *Proxy) endExchange(x *exchange) {
	x.End = time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if x.Fault != NoFault {
		if p.faults == nil {
			p.faults = make(map[Fault]int)
		}
		p.faults[x.Fault]++
	}
	p.exchanges = append(p.exchanges, x.Exchange)
}

// faultRequest injects the faults that strike before the server answers. It reports whether it
// answered the request itself.
func (p *Proxy) faultRequest(w http.ResponseWriter, r *http.Request, x *exchange) bool {
	switch x.Fault {
	case DropBefore:
		dropConnection(w)
		return true
	case InternalError:
		writeS3Error(w, r, http.StatusInternalServerError, "InternalError")
		return true
	case SlowDown:
		writeS3Error(w, r, http.StatusServiceUnavailable, "SlowDown")
		return true
	case Stall:
		if r.ContentLength > 0 {
			r.Body = &stallBody{ReadCloser: r.Body, ctx: r.Context(), at: r.ContentLength / 2, d: p.stallFor()}
			x.stalled = true
		}
	}
	return false
}

// faultResponse injects the faults that strike once the server has answered.
func (p *Proxy) faultResponse(resp *http.Response) error {
	x, _ := resp.Request.Context().Value(exchangeKey{}).(*exchange)
	if x == nil {
		return nil
	}
	x.Status = resp.StatusCode
	hasBody := resp.ContentLength != 0 && resp.Request.Method != http.MethodHead
	switch {
	case x.Fault == Truncate && !hasBody:
		x.Fault = DropAfter
		fallthrough
	case x.Fault == DropAfter:
		_, _ = io.Copy(io.Discard, resp.Body) // the server finishes its work
		return errDropped
	case x.Fault == Truncate:
		resp.Body = &truncatedBody{ReadCloser: resp.Body, left: cutAt(resp.ContentLength)}
	case x.Fault == Stall && !x.stalled && hasBody:
		resp.Body = &stallBody{ReadCloser: resp.Body, ctx: resp.Request.Context(), at: cutAt(resp.ContentLength), d: p.stallFor()}
	case x.Fault == Stall && !x.stalled:
		sleep(resp.Request.Context(), p.stallFor()) // hold the headers
	}
	return nil
}

// proxyError is the reverse proxy's error handler: it drops the connection when a fault asks
// for it, and otherwise answers 502 as the default handler does.
func (p *Proxy) proxyError(w http.ResponseWriter, _ *http.Request, err error) {
	if errors.Is(err, errDropped) {
		dropConnection(w)
		return
	}
	w.WriteHeader(http.StatusBadGateway)
}

func (p *Proxy) stallFor() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stall
}

// cutAt is where a body of length n (-1: unknown) is cut or held: halfway, so that the client
// has started reading and cannot have finished.
func cutAt(n int64) int64 {
	if n < 0 {
		return 16
	}
	return n / 2
}

// dropConnection closes the client's connection without an answer.
func dropConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // the server closes the connection
	}
	_ = conn.Close()
}

func writeS3Error(w http.ResponseWriter, r *http.Request, status int, code string) {
	_, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>`+code+`</Code><Message>injected by the test proxy</Message></Error>`)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// truncatedBody ends in an error after left bytes, or at the body's own end: the client never
// receives the whole body. The reverse proxy then aborts the connection.
type truncatedBody struct {
	io.ReadCloser
	left int64
}

var errTruncated = errors.New("body truncated by the test proxy")

func (t *truncatedBody) Read(b []byte) (int, error) {
	if t.left <= 0 {
		return 0, errTruncated
	}
	if int64(len(b)) > t.left {
		b = b[:t.left]
	}
	n, err := t.ReadCloser.Read(b)
	t.left -= int64(n)
	if errors.Is(err, io.EOF) {
		err = errTruncated
	}
	return n, err
}

// stallBody holds its reader for d (or until ctx ends) once at bytes have been read, or at
// the body's end if that comes first.
type stallBody struct {
	io.ReadCloser
	ctx  context.Context
	at   int64
	d    time.Duration
	done bool
}

func (s *stallBody) Read(b []byte) (int, error) {
	if !s.done && s.at <= 0 {
		s.done = true
		sleep(s.ctx, s.d)
	}
	if !s.done && int64(len(b)) > s.at {
		b = b[:s.at]
	}
	n, err := s.ReadCloser.Read(b)
	s.at -= int64(n)
	if errors.Is(err, io.EOF) && !s.done {
		s.done = true
		sleep(s.ctx, s.d)
	}
	return n, err
}
