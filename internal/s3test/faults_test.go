package s3test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Each fault does to a client what it says, and the proxy records it with the server's answer.
func TestInjectFaults(t *testing.T) {
	const body = "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz"
	var served atomic.Int32 // requests the server saw
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		if r.Method == http.MethodGet {
			_, _ = io.WriteString(w, body)
		}
	}))
	defer upstream.Close()
	const stall = 500 * time.Millisecond

	for _, tc := range []struct {
		fault      Fault
		method     string
		recorded   Fault // the fault counted: a truncate without body is a drop
		served     bool  // the server saw the request
		status     int   // what the client gets; 0: an error
		wholeBody  bool  // the client reads the whole body
		atLeast    time.Duration
		clientWait time.Duration // the client's patience for headers
	}{
		{NoFault, http.MethodGet, NoFault, true, 200, true, 0, 0},
		{DropBefore, http.MethodPut, DropBefore, false, 0, false, 0, 0},
		{DropAfter, http.MethodPut, DropAfter, true, 0, false, 0, 0},
		{InternalError, http.MethodGet, InternalError, false, 500, true, 0, 0},
		{SlowDown, http.MethodPut, SlowDown, false, 503, true, 0, 0},
		{Truncate, http.MethodGet, Truncate, true, 200, false, 0, 0},
		{Truncate, http.MethodPut, DropAfter, true, 0, false, 0, 0},
		{Stall, http.MethodGet, Stall, true, 200, true, stall, 0},     // held midway, then whole
		{Stall, http.MethodPut, Stall, true, 200, true, stall, 0},     // request body held
		{Stall, http.MethodHead, Stall, true, 0, false, 0, stall / 5}, // headers held: the client gives up
	} {
		name := string(tc.fault)
		if name == "" {
			name = "none"
		}
		t.Run(name+" "+tc.method, func(t *testing.T) {
			p, err := NewProxy(upstream.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			p.InjectFaults(func(*http.Request) Fault { return tc.fault }, stall)
			before := served.Load()

			client := &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: tc.clientWait}}
			req, _ := http.NewRequest(tc.method, p.URL+"/bucket/key", nil)
			if tc.method == http.MethodPut {
				req.Body = io.NopCloser(strings.NewReader(body))
				req.ContentLength = int64(len(body))
			}
			start := time.Now()
			resp, err := client.Do(req)
			status, whole := 0, false
			if err == nil {
				status = resp.StatusCode
				b, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				whole = rerr == nil && (tc.method != http.MethodGet || status != 200 || string(b) == body)
			}
			took := time.Since(start)
			if status != tc.status || whole != tc.wholeBody || took < tc.atLeast {
				t.Errorf("client got status %d (err %v), whole body %t, after %s; want %d, %t, at least %s",
					status, err, whole, took, tc.status, tc.wholeBody, tc.atLeast)
			}
			p.Close() // waits for the handler, which records the exchange
			if got := served.Load() > before; got != tc.served {
				t.Errorf("server saw the request: %t, want %t", got, tc.served)
			}
			xs := p.Exchanges()
			if len(xs) != 1 || xs[0].Fault != tc.recorded || (xs[0].Status != 0) != tc.served {
				t.Fatalf("exchanges %+v, want one with fault %q, answered by the server: %t", xs, tc.recorded, tc.served)
			}
			if got := p.FaultCounts(); tc.recorded != NoFault && (len(got) != 1 || got[tc.recorded] != 1) {
				t.Errorf("fault counts %v, want one %s", got, tc.recorded)
			}
		})
	}
}
