//go:build !pprof

package profile

// Start does nothing in a binary built without the "pprof" tag.
func Start(string) (stop func()) { return func() {} }
