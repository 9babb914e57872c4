package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/s3test"
)

// The bug this plugin exists to fix: the parallel jobs of one step save the same key while
// others restore it. Every job succeeds, one upload completes, nothing is left behind, and every
// restored tree is byte-identical to the source.
func TestEightSavesRaceWhileEightRestores(t *testing.T) {
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		a := newAgent(t)
		src := filepath.Join(t.TempDir(), "node_modules")
		makeTree(t, src, 64<<20+12345) // several parts of the default 8 MiB
		want := listing(t, src)

		const n = 8
		savers := make([]*hook, n)
		for i := range n {
			j := a.job(srv, "saver")
			linkTree(t, src, j.cacheDir())
			savers[i] = j.start("post-command")
		}
		waitFor(t, "the first save", func() bool { return stored(t, srv) })

		restorers := make([]*hook, n)
		restored := make([]string, n)
		for i := range n {
			j := a.job(srv, "restorer")
			restored[i] = j.cacheDir()
			restorers[i] = j.start("pre-command")
		}

		saved, lost := 0, 0
		for i, h := range savers {
			out, code := h.wait(t)
			if code != 0 {
				t.Fatalf("saver %d exited %d:\n%s", i, code, out)
			}
			switch {
			case strings.Contains(out, "\nSaved "):
				saved++
			case strings.Contains(out, "Another job already saved"):
				lost++ // uploaded, and lost the conditional create
			case strings.Contains(out, "already saved"):
			default:
				t.Fatalf("saver %d neither saved nor found the object saved:\n%s", i, out)
			}
		}
		if saved != 1 {
			t.Fatalf("%d uploads completed, want exactly 1", saved)
		}
		t.Logf("%d saver stored the object, %d lost the conditional create, %d found it by HEAD", saved, lost, n-saved-lost)
		for i, h := range restorers {
			out, code := h.wait(t)
			if code != 0 || !strings.Contains(out, "Cache hit (exact, file level)") {
				t.Fatalf("restorer %d exited %d:\n%s", i, code, out)
			}
			if got := listing(t, restored[i]); got != want {
				t.Fatalf("restorer %d restored a different tree", i)
			}
		}
		if keys := objects(t, srv); len(keys) != 1 {
			t.Fatalf("objects %q, want one", keys)
		}
		if u := uploadsInProgress(t, srv); u != 0 {
			t.Fatalf("%d multipart uploads left behind", u)
		}
	})
}

// A restore slowed down on purpose while another job force-overwrites its key: the restore
// notices, starts over, and ends with one whole tree, never a mix.
func TestForceOverwriteDuringASlowRestore(t *testing.T) {
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		a := newAgent(t)
		oldJob := a.job(srv, "old")
		oldJob.fill(24 << 20).mustSave()
		oldTree := listing(t, oldJob.cacheDir())

		proxy, downloading := slowProxy(t, srv, 4<<20, isRangedGet)
		restorer := a.job(srv, "restorer").set("ENDPOINT", proxy.URL, "CONCURRENCY", "1", "PART_SIZE", "5MiB")
		restore := restorer.start("pre-command")
		<-downloading

		newJob := a.job(srv, "new").set("FORCE", "true")
		newJob.fill(24 << 20).mustSave()
		newTree := listing(t, newJob.cacheDir())

		out, code := restore.wait(t)
		if code != 0 || !strings.Contains(out, "Restarting restore of") {
			t.Fatalf("restore exited %d without restarting:\n%s", code, out)
		}
		switch got := listing(t, restorer.cacheDir()); got {
		case newTree:
		case oldTree:
			t.Log("restored the old tree whole")
		default:
			t.Fatalf("restored a tree that is neither the old nor the new one:\n%s", out)
		}
	})
}

// The server dies in the middle of an upload: the hook warns and exits 0 well within the stall
// timeout, and no object ever appears.
func TestServerKilledDuringAnUpload(t *testing.T) {
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		a := newAgent(t)
		proxy, uploading := slowProxy(t, srv, 4<<20, isUploadPart)
		const stall = 30 * time.Second
		j := a.job(srv, "saver").set("ENDPOINT", proxy.URL, "STALL_TIMEOUT", stall.String(), "CONDITIONAL_WRITES", "on")
		j.fill(32 << 20)
		save := j.start("post-command")
		<-uploading
		srv.Stop()
		killed := time.Now()

		out, code := save.wait(t)
		if code != 0 || !strings.Contains(out, ":warning: s3-cache:") {
			t.Fatalf("save exited %d, want 0 with a warning:\n%s", code, out)
		}
		took := save.ended.Sub(killed)
		if took > stall {
			t.Fatalf("the hook took %s after the server died, more than the stall timeout %s", took, stall)
		}
		t.Logf("the hook ended %s after the server died", took.Round(time.Millisecond))
		must(t, srv.Restart(t.Context()))
		if keys := objects(t, srv); len(keys) != 0 {
			t.Fatalf("objects after the server restarted: %q", keys)
		}
	})
}

// SIGTERM (a cancelled job) during a save aborts the multipart upload and exits promptly.
func TestSIGTERMDuringASave(t *testing.T) {
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		a := newAgent(t)
		proxy, uploading := slowProxy(t, srv, 4<<20, isUploadPart)
		j := a.job(srv, "saver").set("ENDPOINT", proxy.URL)
		j.fill(32 << 20)
		save := j.start("post-command")
		<-uploading
		if u := uploadsInProgress(t, srv); u != 1 {
			t.Fatalf("%d uploads in progress before SIGTERM, want 1", u)
		}
		save.terminate()
		sent := time.Now()
		out, _ := save.wait(t)
		if took := save.ended.Sub(sent); took > 10*time.Second {
			t.Fatalf("took %s to exit after SIGTERM:\n%s", took, out)
		}
		if u := uploadsInProgress(t, srv); u != 0 {
			t.Fatalf("%d multipart uploads left after SIGTERM:\n%s", u, out)
		}
		if keys := objects(t, srv); len(keys) != 0 {
			t.Fatalf("objects after a cancelled save: %q", keys)
		}
		if l := leftovers(t, a.tmp); len(l) != 0 {
			t.Fatalf("left in TMPDIR: %q", l)
		}
	})
}

// SIGTERM during a restore removes staging and leaves the target exactly as it was.
func TestSIGTERMDuringARestore(t *testing.T) {
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		a := newAgent(t)
		saver := a.job(srv, "saver")
		saver.fill(24 << 20).mustSave()

		proxy, downloading := slowProxy(t, srv, 4<<20, isRangedGet)
		j := a.job(srv, "restorer").set("ENDPOINT", proxy.URL)
		target := j.cacheDir()
		makeTree(t, target, 1<<20) // what the checkout had before
		before := listing(t, target)

		restore := j.start("pre-command")
		<-downloading
		time.Sleep(300 * time.Millisecond) // let extraction into staging begin
		restore.terminate()
		sent := time.Now()
		out, _ := restore.wait(t)
		if took := restore.ended.Sub(sent); took > 10*time.Second {
			t.Fatalf("took %s to exit after SIGTERM:\n%s", took, out)
		}
		if after := listing(t, target); after != before {
			t.Fatalf("a cancelled restore changed the target:\n%s", out)
		}
		if l := leftovers(t, j.checkout); len(l) != 0 {
			t.Fatalf("left in the checkout: %q", l)
		}
		if l := leftovers(t, a.tmp); len(l) != 0 {
			t.Fatalf("left in TMPDIR: %q", l)
		}
	})
}

// Against an endpoint without conditional multipart completes (gofakes3), the probe finds out
// and says so once per agent; saves still succeed and never overwrite.
func TestEndpointWithoutConditionalWrites(t *testing.T) {
	srv := s3test.StartFake(t)
	a := newAgent(t)
	first := a.job(srv, "first")
	first.fill(12 << 20) // multipart
	out, code := first.run("post-command")
	if code != 0 || !strings.Contains(out, "\nSaved ") || strings.Count(out, "does not honour conditional writes") != 1 {
		t.Fatalf("first save: %d\n%s", code, out)
	}

	second := a.job(srv, "second").set("KEY_EXTRA", "other")
	second.fill(12 << 20)
	out, code = second.run("post-command")
	if code != 0 || !strings.Contains(out, "\nSaved ") || strings.Contains(out, "conditional writes") {
		t.Fatalf("second save on the same agent: %d\n%s", code, out)
	}

	// A third job with other contents under the first key leaves the object alone.
	keys := objects(t, srv)
	third := a.job(srv, "third")
	third.fill(12 << 20)
	if out, code := third.run("post-command"); code != 0 || strings.Contains(out, "\nSaved ") {
		t.Fatalf("third save: %d\n%s", code, out)
	}
	restorer := a.job(srv, "restorer")
	if out, code := restorer.run("pre-command"); code != 0 || !strings.Contains(out, "Cache hit (exact") {
		t.Fatalf("restore: %d\n%s", code, out)
	}
	if listing(t, restorer.cacheDir()) != listing(t, first.cacheDir()) {
		t.Fatal("the first job's cache was overwritten")
	}
	if after := objects(t, srv); strings.Join(after, ",") != strings.Join(keys, ",") || len(keys) != 2 {
		t.Fatalf("objects %q, then %q: want the two caches and no probe objects", keys, after)
	}
}
