package s3

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// Newest picks the newest of a prefix's objects from one bounded listing, whatever their key order,
// and never an object of another prefix.
func TestNewest(t *testing.T) {
	f := newFake()
	s := newTestStore(t, f)
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.now = func() time.Time { clock = clock.Add(time.Minute); return clock }
	// Three members of family a, the newest in the middle of the key order; family ab shares a
	// string prefix but not the folder, and is newer still; so is a folder marker.
	f.put("p/file/a/bbb.tar.zst", []byte("old"))
	f.put("p/file/a/ccc.tar.zst", []byte("middle"))
	f.put("p/file/a/aaa.tar.zst", []byte("newest"))
	f.put("p/file/ab/zzz.tar.zst", []byte("other family"))
	f.put("p/file/a/", nil)

	got, err := s.Newest(t.Context(), "p/file/a/")
	if err != nil {
		t.Fatal(err)
	}
	if got.Key != "p/file/a/aaa.tar.zst" || got.Size != int64(len("newest")) || got.Count != 3 || got.Truncated {
		t.Fatalf("newest %+v, want p/file/a/aaa.tar.zst of 3", got)
	}
	if calls := f.recorded(); len(calls) != 1 || calls[0].op != "ListObjectsV2" || calls[0].maxKeys != ListLimit {
		t.Fatalf("calls %+v, want one ListObjectsV2 bounded by %d keys", calls, ListLimit)
	}
	if _, err := s.Newest(t.Context(), "p/file/none/"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("empty prefix: %v, want ErrNotFound", err)
	}
}

// A prefix with more objects than the limit is still one call; the answer says it saw a part.
func TestNewestIsBounded(t *testing.T) {
	f := newFake()
	s := newTestStore(t, f)
	for i := range ListLimit + 5 {
		f.put(fmt.Sprintf("p/%05d", i), nil)
	}
	got, err := s.Newest(t.Context(), "p/")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Truncated || got.Count != ListLimit || len(f.recorded("ListObjectsV2")) != 1 {
		t.Fatalf("got %+v after %d call(s), want %d of a truncated listing in one", got, len(f.recorded("ListObjectsV2")), ListLimit)
	}
}
