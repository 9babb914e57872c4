//go:build pprof

package profile

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
)

// Start starts CPU and block profiling when S3_CACHE_PROFILE_DIR is set; stop
// ends them and writes the files, and the allocation profile.
func Start(name string) (stop func()) {
	dir := os.Getenv("S3_CACHE_PROFILE_DIR")
	if dir == "" {
		return func() {}
	}
	base := filepath.Join(dir, fmt.Sprintf("%s-%d", name, os.Getpid()))
	cpu, err := os.Create(base + ".cpu.pprof")
	if err != nil {
		fmt.Fprintf(os.Stderr, "profile: %v\n", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(cpu); err != nil {
		fmt.Fprintf(os.Stderr, "profile: start CPU profile: %v\n", err)
		_ = cpu.Close()
		return func() {}
	}
	runtime.SetBlockProfileRate(1)
	return func() {
		pprof.StopCPUProfile()
		if err := cpu.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "profile: %v\n", err)
		}
		// allocs: where fresh memory comes from, which costs page faults (docs/design.md#performance-and-memory).
		for _, kind := range []string{"block", "allocs"} {
			write(base+"."+kind+".pprof", kind)
		}
	}
}

// write writes the profile kind to the file path, saying on stderr what failed.
func write(path, kind string) {
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "profile: %v\n", err)
		return
	}
	if err := pprof.Lookup(kind).WriteTo(f, 0); err != nil {
		fmt.Fprintf(os.Stderr, "profile: write %s profile: %v\n", kind, err)
	}
	if err := f.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "profile: %v\n", err)
	}
}
