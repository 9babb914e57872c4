package s3

import (
	"errors"
	"fmt"
	"strings"
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
	// Names that are not members are never picked, however new: an object in a deeper folder
	// (another save whose prefix key ends in this family's folder) and a name no save makes.
	member := func(c byte) string { return "p/file/a/" + strings.Repeat(string(c), 32) + ".tar.zst" }
	f.put(member('b'), []byte("old"))
	f.put(member('c'), []byte("middle"))
	f.put(member('a'), []byte("newest"))
	f.put("p/file/ab/"+strings.Repeat("f", 32)+".tar.zst", []byte("other family"))
	f.put("p/file/a/", nil)
	f.put("p/file/a/deeper/"+strings.Repeat("e", 32)+".tar.zst", []byte("planted below"))
	f.put("p/file/a/planted.tar.zst", []byte("not a member's name"))

	got, err := s.Newest(t.Context(), "p/file/a/")
	if err != nil {
		t.Fatal(err)
	}
	if got.Key != member('a') || got.Size != int64(len("newest")) || got.Count != 3 || got.Truncated {
		t.Fatalf("newest %+v, want %s of 3", got, member('a'))
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
		f.put(fmt.Sprintf("p/%032x.tar.zst", i), nil)
	}
	got, err := s.Newest(t.Context(), "p/")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Truncated || got.Count != ListLimit || len(f.recorded("ListObjectsV2")) != 1 {
		t.Fatalf("got %+v after %d call(s), want %d of a truncated listing in one", got, len(f.recorded("ListObjectsV2")), ListLimit)
	}
}
