package s3test

import "testing"

// Each runs test as a subtest against a fresh server of every real kind. A missing server
// binary fails the test with instructions: it never skips.
func Each(t *testing.T, test func(t *testing.T, srv *Server)) {
	t.Helper()
	for _, kind := range Kinds {
		t.Run(kind, func(t *testing.T) {
			test(t, StartT(t, kind))
		})
	}
}

// StartT starts a server of kind for the test and stops it at the end.
func StartT(t *testing.T, kind string) *Server {
	t.Helper()
	srv, err := Start(t.Context(), kind, t.TempDir(), "cache")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv
}
