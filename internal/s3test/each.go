package s3test

import "testing"

// Integration marks t as an integration test, which talks to an S3 server over HTTP: in -short
// mode, which runs only the fast layer (the flows against pkg/s3's fake client), it is skipped.
// Every helper that starts a server calls it, so every package's server tests follow. Without
// -short a missing server binary still fails the test with instructions.
func Integration(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs an S3 server; run without -short")
	}
}

// Each runs test as a subtest against a fresh server of every real kind. A missing server
// binary fails the test with instructions: it never skips (but for -short: see Integration).
func Each(t *testing.T, test func(t *testing.T, srv *Server)) {
	t.Helper()
	Integration(t)
	for _, kind := range Kinds {
		t.Run(kind, func(t *testing.T) {
			test(t, StartT(t, kind))
		})
	}
}

// StartT starts a server of kind for the test and stops it at the end.
func StartT(t *testing.T, kind string) *Server {
	t.Helper()
	Integration(t)
	srv, err := Start(t.Context(), kind, t.TempDir(), "cache")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv
}
