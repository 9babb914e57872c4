// Package buildkite is the plugin's side of the Buildkite job: the job's description from its
// BUILDKITE_* variables, and log output that follows Buildkite's conventions (a "---" group per
// phase, "+++"/"^^^ +++" only for problems that need attention, progress lines on long
// transfers, a one-line summary).
package buildkite

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Log writes Buildkite-formatted lines. It is safe for concurrent use. A nil *Log discards
// everything: it may sit in a Logger interface of pkg/archive or pkg/s3, where nil must mean quiet.
type Log struct {
	mu sync.Mutex
	w  io.Writer
}

// NewLog returns a Log writing to w (the hook's stdout, which the agent shows in the job log).
func NewLog(w io.Writer) *Log { return &Log{w: w} }

func (l *Log) line(format string, args ...any) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format+"\n", args...)
}

// Group starts a collapsed log group for a phase.
func (l *Log) Group(format string, args ...any) { l.line("--- :s3: "+format, args...) }

// Infof writes one line.
func (l *Log) Infof(format string, args ...any) { l.line(format, args...) }

// Warnf writes a warning. The build goes on; the group is expanded so it is seen.
func (l *Log) Warnf(format string, args ...any) {
	l.line("^^^ +++")
	l.line(":warning: s3-cache: "+format, args...)
}

// Errorf writes an error that fails the hook, in an expanded group.
func (l *Log) Errorf(format string, args ...any) {
	l.line("+++ :rotating_light: s3-cache: "+format, args...)
}

// Progress prints the transfer rate of count every interval until the returned stop is called.
// count must be safe to call concurrently (an atomic counter).
func (l *Log) Progress(verb string, count func() int64, total int64, interval time.Duration) (stop func()) {
	start := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				n, el := count(), time.Since(start)
				msg := fmt.Sprintf("%s %s (%s/s)", verb, Bytes(n), Bytes(Rate(n, el)))
				if total > 0 && n > 0 {
					eta := time.Duration(float64(el) * float64(total-n) / float64(n))
					msg = fmt.Sprintf("%s %s of %s (%s/s, %d%%, ETA %s)", verb, Bytes(n), Bytes(total),
						Bytes(Rate(n, el)), n*100/total, eta.Round(time.Second))
				}
				l.line("%s", msg)
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// Rate is bytes per second.
func Rate(n int64, d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64(float64(n) / d.Seconds())
}

// Bytes formats a byte count for people: 1.5 MiB.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
