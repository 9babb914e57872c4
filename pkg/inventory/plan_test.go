package inventory

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/s3"
)

// PlanGC's order and limits, on an inventory made by hand (the integration tests build one in a
// bucket): caches a..e of 100 bytes each, last used a day apart, e the most recent.
func TestPlanGC(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	day := 24 * time.Hour
	inventory := func() *Inventory {
		mk := func(name string, saved, used time.Time, markers ...time.Time) Cache {
			c := Cache{Key: "p/o/x/branch/" + name, Org: "o", Pipeline: "x", Level: "branch", Branch: name, Size: 100, Saved: saved, Used: used}
			for i, m := range markers {
				c.markers = append(c.markers, marker{key: "p/.s3-cache-used/o/x/branch/" + name + "/" + string(rune('0'+i)), modified: m})
			}
			return c
		}
		return &Inventory{Prefix: "p", Caches: []Cache{
			mk("a", ago(5*day), time.Time{}),
			// b was saved long ago but restored recently: its markers, not its save, date it.
			mk("b", ago(30*day), ago(4*day), ago(20*day), ago(4*day)),
			mk("c", ago(3*day), time.Time{}),
			mk("d", ago(9*day), ago(2*day), ago(2*day)),
			mk("e", ago(10*time.Minute), time.Time{}),
			{Key: "p/o/README", Level: Unknown, Size: 5000, Saved: ago(100 * day)},
		}, orphans: []marker{{key: "p/.s3-cache-used/o/x/branch/gone/1", modified: ago(day)},
			{key: "p/.s3-cache-used/o/x/branch/new/1", modified: ago(time.Minute)}}}
	}
	oldMarkers := []string{"p/.s3-cache-used/o/x/branch/b/0", "p/.s3-cache-used/o/x/branch/gone/1"}
	for _, tc := range []struct {
		name    string
		o       GCOptions
		deleted string // cache names, in order
		markers []string
	}{
		{"no limits: only markers", GCOptions{KeepRecent: time.Hour}, "", oldMarkers},
		{"max-size: least recently used first", GCOptions{MaxSize: 250, KeepRecent: time.Hour}, "a b c",
			[]string{"p/.s3-cache-used/o/x/branch/b/0", "p/.s3-cache-used/o/x/branch/b/1", "p/.s3-cache-used/o/x/branch/gone/1"}},
		{"exactly at max-size", GCOptions{MaxSize: 300, KeepRecent: time.Hour}, "a b", nil},
		{"unused-for", GCOptions{UnusedFor: 3*day + time.Hour, KeepRecent: time.Hour}, "a b", nil},
		{"both", GCOptions{UnusedFor: 4*day + time.Hour, MaxSize: 300, KeepRecent: time.Hour}, "a b", nil},
		{"keep-recent survives any budget", GCOptions{MaxSize: 1, KeepRecent: time.Hour}, "a b c d", nil},
		{"keep-recent of days", GCOptions{MaxSize: 1, KeepRecent: 3*day + time.Hour}, "a b", nil},
		{"zero keep-recent", GCOptions{MaxSize: 1}, "a b c d e", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Now = func() time.Time { return now }
			inv := inventory()
			uploads := []s3.Upload{{Key: "p/o/x/pipeline/h", ID: "old", Initiated: ago(25 * time.Hour)},
				{Key: "p/o/x/pipeline/h", ID: "live", Initiated: ago(time.Hour)}}
			p := PlanGC(inv, uploads, tc.o)
			var names []string
			var freed int64
			for _, d := range p.Caches {
				names = append(names, d.Branch)
				freed += d.Size
			}
			if strings.Join(names, " ") != tc.deleted {
				t.Fatalf("deletes %q, want %q", names, tc.deleted)
			}
			if p.Before != 500 || p.Freed != freed || p.After != 500-freed || p.Unknown != 1 || p.Kept+len(p.Caches) != 5 {
				t.Fatalf("plan %+v: bytes or counts wrong", p)
			}
			if tc.o.MaxSize > 0 && p.After > tc.o.MaxSize && !strings.Contains(tc.name, "keep-recent") {
				t.Fatalf("%d bytes left, over max-size %d", p.After, tc.o.MaxSize)
			}
			if tc.markers != nil && !slices.Equal(p.Markers, tc.markers) {
				t.Fatalf("markers %q, want %q", p.Markers, tc.markers)
			}
			for _, m := range p.Markers {
				if strings.Contains(m, "/new/") && tc.o.KeepRecent > time.Minute {
					t.Fatalf("deletes marker %s: an orphan younger than keep-recent", m)
				}
				if strings.HasSuffix(m, "/d/0") && !slices.Contains(names, "d") {
					t.Fatalf("deletes marker %s: the newest of a kept cache", m)
				}
			}
			if len(p.Uploads) != 1 || p.Uploads[0].ID != "old" {
				t.Fatalf("aborts %+v, want the upload initiated over a day ago", p.Uploads)
			}
			var out bytes.Buffer
			p.Write(&out, true)
			for _, d := range p.Caches {
				if !strings.Contains(out.String(), "would delete "+d.Key+" (") {
					t.Fatalf("plan output lacks %s:\n%s", d.Key, out.String())
				}
			}
			if !strings.Contains(out.String(), "would abort incomplete multipart upload old of p/o/x/pipeline/h") {
				t.Fatalf("plan output lacks the stale upload:\n%s", out.String())
			}
		})
	}
}
