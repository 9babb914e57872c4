package plugin

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/buildkite"
)

// markers records the markers written; fail and block make Mark fail or hang until its context ends.
type markers struct {
	mu    sync.Mutex
	keys  []string
	fail  error
	block bool
}

func (m *markers) Mark(ctx context.Context, key string) error {
	if m.block {
		<-ctx.Done()
		return ctx.Err()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.keys = append(m.keys, key)
	return nil
}

func newUsage(t *testing.T, m *markers, clock *time.Time) (*usage, *bytes.Buffer) {
	t.Helper()
	var log bytes.Buffer
	return &usage{ctx: t.Context(), store: m, prefix: "p", scope: "e\x00b", dir: t.TempDir() + "/state",
		log: buildkite.NewLog(&log), now: func() time.Time { return *clock }}, &log
}

// One marker per key and hour on an agent: a second hit in the same hour sends nothing.
func TestUsageMarksOncePerHour(t *testing.T) {
	clock := time.Date(2026, 12, 2, 4, 10, 0, 0, time.UTC)
	m := &markers{}
	u, log := newUsage(t, m, &clock)
	for _, step := range []struct {
		key     string
		advance time.Duration
	}{{"p/o/x/pipeline/a.tar", 0}, {"p/o/x/pipeline/a.tar", 40 * time.Minute}, {"p/o/x/pipeline/b.tar", 0},
		{"p/o/x/pipeline/a.tar", 20 * time.Minute}, {"p/o/x/pipeline/a.tar", 0}} {
		clock = clock.Add(step.advance)
		u.used(step.key)
		u.wait()
	}
	want := []string{"p/.s3-cache-used/o/x/pipeline/a.tar/2026120204", "p/.s3-cache-used/o/x/pipeline/b.tar/2026120204",
		"p/.s3-cache-used/o/x/pipeline/a.tar/2026120205"}
	if strings.Join(m.keys, " ") != strings.Join(want, " ") {
		t.Fatalf("markers %q, want %q\n%s", m.keys, want, log)
	}
}

// A marker that cannot be written is an information line, never a warning, and is tried again
// at the next hit; one that hangs holds the hook for usageWait at most.
func TestUsageFailuresNeverHurtTheRestore(t *testing.T) {
	clock := time.Date(2026, 12, 2, 4, 10, 0, 0, time.UTC)
	m := &markers{fail: errors.New("403 AccessDenied")}
	u, log := newUsage(t, m, &clock)
	u.used("p/o/all/a.tar")
	u.wait()
	if !strings.Contains(log.String(), "Could not record the use of p/o/all/a.tar") || strings.Contains(log.String(), ":warning:") {
		t.Fatalf("log %q, want one information line", log)
	}
	m.fail = nil
	u.used("p/o/all/a.tar")
	u.wait()
	if len(m.keys) != 1 {
		t.Fatalf("markers %q after a failed one, want it written at the next hit", m.keys)
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	hung := &markers{block: true}
	u, _ = newUsage(t, hung, &clock)
	u.ctx = ctx
	start := time.Now()
	u.used("p/o/all/a.tar")
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("used took %s: it must not wait for the marker", d)
	}
	u.wait()
	if d := time.Since(start); d < usageWait || d > usageWait+time.Second {
		t.Fatalf("wait took %s, want about %s", d, usageWait)
	}
}
