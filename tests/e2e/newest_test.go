package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/s3test"
)

// lockfile writes the job's manifest.
func (j *job) lockfile(content string) *job {
	must(j.t, os.WriteFile(filepath.Join(j.checkout, "package-lock.json"), []byte(content), 0o644))
	return j
}

// When every level misses, the newest of the family's three members is restored, not a newer
// object of another family (another key-extra) or of another namespace (a branch).
func TestNewestMatchFallback(t *testing.T) {
	srv := s3test.StartT(t, s3test.Versitygw)
	a := newAgent(t)
	saved := map[string]string{} // object → the tree saved there
	save := func(j *job) string {
		t.Helper()
		tree := listing(t, j.cacheDir())
		before := objects(t, srv)
		j.mustSave()
		for _, k := range objects(t, srv) {
			if !strings.Contains(strings.Join(before, "\n"), k) {
				saved[k] = tree
				return k
			}
		}
		t.Fatal("no new object")
		return ""
	}
	var members []string
	for i := range 3 {
		if i > 0 {
			time.Sleep(1100 * time.Millisecond) // LastModified has a resolution of a second
		}
		j := a.job(srv, fmt.Sprintf("main-%d", i)).on("main", "", "").lockfile(fmt.Sprintf(`{"v": %d}`, i)).fill(16<<10 + i)
		members = append(members, save(j))
	}
	time.Sleep(1100 * time.Millisecond)
	other := save(a.job(srv, "other-family").on("main", "", "").set("KEY_EXTRA", "node22").lockfile(`{"v": 9}`).fill(8 << 10))
	branch := save(a.job(srv, "branch").on("feature", "", "").lockfile(`{"v": 8}`).fill(8 << 10))
	family := members[0][:strings.LastIndex(members[0], "/")+1]
	for _, k := range members {
		if !strings.HasPrefix(k, family) {
			t.Fatalf("members %q are not in one folder", members)
		}
	}
	if strings.HasPrefix(other, family) || strings.HasPrefix(branch, family) {
		t.Fatalf("other families %s, %s share the folder %s", other, branch, family)
	}

	j := a.job(srv, "changed-lockfile").on("main", "", "").lockfile(`{"v": 3}`)
	out, hit, key := j.restore()
	if hit != "fallback" || key != members[2] || !strings.Contains(out, "Newest of 3 cache(s) with any manifest") {
		t.Fatalf("HIT=%s HIT_KEY=%s, want fallback of the newest member %s\n%s", hit, key, members[2], out)
	}
	if listing(t, j.cacheDir()) != saved[members[2]] {
		t.Fatal("restored another tree than the newest member's")
	}
	// A save after a fallback stores the new exact key, in the family.
	if k := save(j); !strings.HasPrefix(k, family) {
		t.Fatalf("saved %s, want it in the family %s", k, family)
	}

	// Off, the same miss stays a miss.
	off := a.job(srv, "off").on("main", "", "").lockfile(`{"v": 4}`).set("RESTORE_NEWEST", "false")
	if out, hit, _ := off.restore(); hit != "miss" {
		t.Fatalf("restore-newest false: HIT=%s\n%s", hit, out)
	}
}
