//go:build unix

package archive

import (
	"syscall"
	"testing"
)

// makeFifo creates a named pipe at p.
func makeFifo(t testing.TB, p string) {
	t.Helper()
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Fatal(err)
	}
}
