package cachekey

import (
	"testing"
	"time"
)

func TestUsedMarkerRoundTrip(t *testing.T) {
	at := time.Date(2026, 12, 2, 4, 59, 59, 0, time.FixedZone("x", 3600)) // 03:59 UTC
	for _, tc := range []struct{ prefix, key, marker string }{
		{"", "org/pipe/pipeline/h.tar.zst", ".s3-cache-used/org/pipe/pipeline/h.tar.zst/2026120203"},
		{"cache", "cache/org/all/h.tar", "cache/.s3-cache-used/org/all/h.tar/2026120203"},
		{"/a/b/", "a/b/org/p/ns/pr-1/file/f/h.tar.gz", "a/b/.s3-cache-used/org/p/ns/pr-1/file/f/h.tar.gz/2026120203"},
	} {
		m := UsedMarker(tc.prefix, tc.key, at)
		if m != tc.marker {
			t.Errorf("UsedMarker(%q, %q) = %q, want %q", tc.prefix, tc.key, m, tc.marker)
		}
		key, hour, ok := ParseUsedMarker(tc.prefix, m)
		if !ok || key != tc.key || !hour.Equal(at.Truncate(time.Hour)) {
			t.Errorf("ParseUsedMarker(%q) = %q, %v, %t; want %q at %v", m, key, hour, ok, tc.key, at.Truncate(time.Hour))
		}
	}
	for _, bad := range []string{"cache/org/all/h.tar", "cache/.s3-cache-used/2026120203", "cache/.s3-cache-used/k/notanhour",
		"other/.s3-cache-used/k/2026120203", "cache/.s3-cache-used//2026120203"} {
		if key, _, ok := ParseUsedMarker("cache", bad); ok {
			t.Errorf("ParseUsedMarker(%q) = %q, want not a marker", bad, key)
		}
	}
}
