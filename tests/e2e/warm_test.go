package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/s3test"
)

// On a persistent agent the next job of a pipeline finds the checkout's cached directory as the
// last job saved or restored it: its restore downloads nothing and tells the command the hit is
// exact. Once the directory changes, the next restore is a real one that puts the tree back.
func TestWarmAgentRestoresNothing(t *testing.T) {
	srv := s3test.StartT(t, s3test.Versitygw)
	a := newAgent(t)
	first := a.job(srv, "first").on("main", "", "").fill(64 << 10)
	// A tree changed within the timestamp window before a save is not stamped (its change times
	// cannot tell a change just before the save from one during it: docs/design.md#warm-restores).
	time.Sleep(100 * time.Millisecond)
	first.mustSave()
	tree := listing(t, first.cacheDir())

	next := a.job(srv, "next").on("main", "", "")
	next.checkout = first.checkout // the agent reuses the pipeline's checkout
	out, hit, key := next.restore()
	if hit != "exact" || key == "" || !strings.Contains(out, "Cache hit (exact): "+next.cacheDir()+" already holds "+key+", untouched since ") ||
		!strings.Contains(out, "; nothing downloaded") {
		t.Fatalf("restore on a warm agent: HIT=%s HIT_KEY=%s, want exact and the warm line\n%s", hit, key, out)
	}
	out, hit, _ = next.restore()
	if hit != "exact" || !strings.Contains(out, "nothing downloaded") {
		t.Fatalf("second warm restore: HIT=%s\n%s", hit, out)
	}

	// The command changes a file: the next restore is real.
	must(t, os.WriteFile(filepath.Join(next.cacheDir(), "pkg0", "cli.js"), []byte("changed"), 0o755))
	out, hit, _ = next.restore()
	if hit != "exact" || strings.Contains(out, "nothing downloaded") || !strings.Contains(out, "restored "+key) {
		t.Fatalf("restore after a change: HIT=%s, want a real exact restore\n%s", hit, out)
	}
	if listing(t, next.cacheDir()) != tree {
		t.Fatal("the restore did not put the saved tree back")
	}
}
