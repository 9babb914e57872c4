package cache

import (
	"cmp"
	"slices"
	"strings"
	"testing"
	"time"
)

// A tree is trusted to show every later change only if each filesystem it lies on keeps change
// times finely: one device of whole milliseconds (a FAT or ext3 mount inside the paths) is
// enough to refuse it, however many entries elsewhere have finer times, and however the walk's
// directories were merged.
func TestFineTimestampsPerDevice(t *testing.T) {
	now := time.Now().Add(-time.Second).Truncate(time.Millisecond).UnixNano()
	fine := func(dev uint64) meta { return meta{mode: modeRegular, dev: dev, ctime: now + 123} }
	coarse := func(dev uint64) meta { return meta{mode: modeRegular, dev: dev, ctime: now} }
	for _, tc := range []struct {
		name    string
		entries []meta
		fine    bool
	}{
		{"one fine device", []meta{fine(1), fine(1)}, true},
		{"one device, some times whole milliseconds", []meta{coarse(1), fine(1), coarse(1)}, true},
		{"one coarse device", []meta{coarse(1), coarse(1)}, false},
		{"two fine devices", []meta{fine(1), fine(2), coarse(2)}, true},
		{"a coarse device inside a fine one", []meta{fine(1), fine(1), coarse(2), fine(1)}, false},
		{"a coarse device first", []meta{coarse(2), fine(1), fine(1)}, false},
		{"no entries", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var whole tree
			for _, m := range tc.entries {
				whole.addEntry(m, 0)
			}
			// As the walk builds it: one tree per directory, merged in any order.
			var merged tree
			for i := len(tc.entries) - 1; i >= 0; i-- {
				var dir tree
				dir.addEntry(tc.entries[i], 0)
				merged.merge(dir)
			}
			if whole.fine() != tc.fine || merged.fine() != tc.fine {
				t.Fatalf("fine: %t, merged %t; want %t (devices %+v)", whole.fine(), merged.fine(), tc.fine, whole.devs)
			}
			if !sameDevs(whole.devs, merged.devs) {
				t.Fatalf("devices %+v, merged %+v", whole.devs, merged.devs)
			}
			err := settle(t.Context(), whole)
			if tc.fine && err != nil {
				t.Fatalf("settle: %v", err)
			}
			if !tc.fine && len(tc.entries) > 0 && (err == nil || !strings.Contains(err.Error(), "coarse timestamps")) {
				t.Fatalf("settle: %v, want a refusal for coarse timestamps", err)
			}
		})
	}
}

// sameDevs reports whether two trees found the same devices, in whatever order.
func sameDevs(a, b []devTimes) bool {
	order := func(x, y devTimes) int { return cmp.Compare(x.dev, y.dev) }
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, order)
	slices.SortFunc(b, order)
	return slices.Equal(a, b)
}
