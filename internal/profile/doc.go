// Package profile writes CPU, block and allocation profiles of a hook binary, for the
// benchmark (scripts/bench --profile). It is compiled in only with the build
// tag "pprof": a release binary's Start does nothing and reads nothing.
//
// With the tag, Start reads S3_CACHE_PROFILE_DIR; when it is set, the CPU
// profile, the block profile (every blocking event) and the allocation profile
// (where fresh memory came from) of the process are written there as
// <name>-<pid>.cpu.pprof, .block.pprof and .allocs.pprof when the returned
// stop function runs. A failure to profile is printed to
// standard error and never changes what the binary does. A process killed
// before stop runs leaves a truncated CPU profile and no block profile.
package profile
