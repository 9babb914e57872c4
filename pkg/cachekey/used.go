package cachekey

// Why a file: the names of last-use markers, which the hooks write and the s3-cache command
// reads (docs/design.md#last-use-tracking-and-gc).

import (
	"strings"
	"time"
)

// UsedFolder is the folder, below the key prefix, of the last-use markers.
const UsedFolder = ".s3-cache-used"

// markerHour names the hour of a marker, in UTC.
const markerHour = "2006010215"

// UsedMarker returns the name of the marker that records a use of the object key (a full object
// name, prefix included) in the hour of at: <prefix>/.s3-cache-used/<key without prefix>/<YYYYMMDDHH>.
func UsedMarker(prefix, key string, at time.Time) string {
	prefix = strings.Trim(prefix, "/")
	rest := key
	if prefix != "" {
		rest = strings.TrimPrefix(key, prefix+"/")
		prefix += "/"
	}
	return prefix + UsedFolder + "/" + rest + "/" + at.UTC().Format(markerHour)
}

// ParseUsedMarker returns the object key and the hour a marker name (as UsedMarker makes it)
// records; ok is false for any other name.
func ParseUsedMarker(prefix, marker string) (key string, hour time.Time, ok bool) {
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	rest, found := strings.CutPrefix(marker, prefix+UsedFolder+"/")
	i := strings.LastIndexByte(rest, '/')
	if !found || i <= 0 {
		return "", time.Time{}, false
	}
	hour, err := time.Parse(markerHour, rest[i+1:])
	if err != nil {
		return "", time.Time{}, false
	}
	return prefix + rest[:i], hour, true
}
