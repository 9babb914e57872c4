package s3

import "time"

// SetNow sets the clock a store judges the age of multipart uploads by.
func SetNow(s *Store, now func() time.Time) { s.now = now }

// Logged collects a store's warnings and info lines (Options.Log).
type Logged = logged
