package s3

import (
	"fmt"
	"testing"
)

// DeleteKeys sends at most DeleteBatch keys a call and removes every key.
func TestDeleteKeysBatches(t *testing.T) {
	for _, tc := range []struct {
		keys, calls int
	}{{0, 0}, {1, 1}, {DeleteBatch, 1}, {DeleteBatch + 1, 2}, {2*DeleteBatch + 500, 3}} {
		t.Run(fmt.Sprint(tc.keys), func(t *testing.T) {
			f := newFake()
			s := newTestStore(t, f)
			keys := make([]string, tc.keys)
			for i := range keys {
				keys[i] = fmt.Sprintf("p/%06d", i)
				f.put(keys[i], []byte("x"))
			}
			f.put("p/kept", []byte("x"))
			if err := s.DeleteKeys(t.Context(), keys); err != nil {
				t.Fatal(err)
			}
			if got := len(f.recorded("DeleteObjects")); got != tc.calls {
				t.Fatalf("%d DeleteObjects calls, want %d", got, tc.calls)
			}
			if len(f.objects) != 1 {
				t.Fatalf("%d object(s) left, want only p/kept", len(f.objects))
			}
		})
	}
}

// Mark writes an empty object, whatever storage class saves use.
func TestMarkWritesAnEmptyObject(t *testing.T) {
	f := newFake()
	s := newTestStore(t, f, func(o *Options) { o.StorageClass = "STANDARD_IA" })
	if err := s.Mark(t.Context(), "p/.s3-cache-used/k/2026010100"); err != nil {
		t.Fatal(err)
	}
	o, ok := f.object("p/.s3-cache-used/k/2026010100")
	if !ok || len(o.data) != 0 {
		t.Fatalf("marker %+v (found %t), want an empty object", o, ok)
	}
}
