package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// corruptionSource makes a source tree whose archive is large enough to
// damage in the middle: incompressible data between text files.
func corruptionSource(t *testing.T) string {
	t.Helper()
	src := filepath.Join(tempDir(t), "src")
	rnd := rand.New(rand.NewPCG(3, 4))
	noise := make([]byte, 256<<10)
	for i := range noise {
		noise[i] = byte(rnd.IntN(256))
	}
	mtime := time.Unix(1_600_000_000, 0)
	for _, name := range []string{"a.txt", "b/c.txt", "d.txt"} {
		writeFile(t, filepath.Join(src, name), "some text that compresses well\n", 0o644, mtime)
	}
	writeFile(t, filepath.Join(src, "b/noise.bin"), string(noise), 0o644, mtime)
	writeFile(t, filepath.Join(src, "e/more.bin"), string(noise[:100<<10]), 0o644, mtime)
	return src
}

// TestCorruptStreams: damaged streams give ErrCorrupt and change nothing.
func TestCorruptStreams(t *testing.T) {
	src := corruptionSource(t)
	archives := map[Compression][]byte{}
	for _, c := range allCompressions {
		archives[c], _ = mustWrite(t, []string{src}, c, 0, nil)
	}
	// The tar stream of src with extra bytes after the end-of-archive
	// marker, and without the marker.
	raw := archives[None]
	withGarbage := append(bytes.Clone(raw), []byte("garbage after the end")...)
	var noMarker bytes.Buffer
	{
		tw := tar.NewWriter(&noMarker)
		tr := tar.NewReader(bytes.NewReader(raw))
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := tw.WriteHeader(hdr); err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(tw, tr); err != nil {
				t.Fatal(err)
			}
		}
		if err := tw.Flush(); err != nil { // no Close: no end-of-archive marker
			t.Fatal(err)
		}
	}
	half := func(b []byte) []byte { return b[:len(b)/2] }
	flipAt := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		b[i] ^= 0x55
		return b
	}
	flip := func(b []byte) []byte { return flipAt(b, len(b)/2) }
	// Offsets in raw: the middle byte lies in the content of b/noise.bin;
	// the first entry, "0/", is a PAX header block, its records, then its
	// own header block, with no content; a.txt's content follows its
	// header blocks.
	aTxt := bytes.Index(raw, []byte("some text that compresses well\n"))
	aTxtPadding := aTxt + len("some text that compresses well\n")
	// The trailer's records block (its hex digits) is the third block from
	// the end.
	trailerHex := bytes.Index(raw[len(raw)-3*blockSize:], []byte(trailerKey+"=")) + len(raw) - 3*blockSize + len(trailerKey+"=")

	cases := []struct {
		name string
		c    Compression
		data []byte
	}{
		{"zstd truncated", Zstd, half(archives[Zstd])},
		{"zstd without checksum bytes", Zstd, archives[Zstd][:len(archives[Zstd])-4]},
		{"zstd flipped byte", Zstd, flip(archives[Zstd])},
		{"zstd garbage after frame", Zstd, append(bytes.Clone(archives[Zstd]), "garbage"...)},
		{"zstd empty", Zstd, nil},
		{"zstd not zstd", Zstd, archives[Gzip]},
		{"gzip truncated", Gzip, half(archives[Gzip])},
		{"gzip flipped byte", Gzip, flip(archives[Gzip])},
		{"gzip garbage after member", Gzip, append(bytes.Clone(archives[Gzip]), "garbage"...)},
		{"gzip empty", Gzip, nil},
		{"none truncated", None, half(raw)},
		{"none empty", None, nil},
		{"none flipped header byte", None, flip(raw[:1024])},
		{"none flipped content byte", None, flip(raw)},
		{"none flipped first content byte", None, flipAt(raw, aTxt)},
		{"none flipped padding byte", None, flipAt(raw, aTxtPadding)},
		{"none flipped checksum digit", None, flipAt(raw, trailerHex)},
		{"zstd flipped content byte under the frame", Zstd, compress(t, Zstd, flip(raw))},
		{"gzip flipped content byte under the member", Gzip, compress(t, Gzip, flip(raw))},
		{"none without trailer", None, unsealedTar(t, []tarEntry{{name: "0", typ: tar.TypeReg, body: "x"}})},
		{"zstd without trailer", Zstd, compress(t, Zstd, unsealedTar(t, []tarEntry{{name: "0", typ: tar.TypeReg, body: "x"}}))},
		{"none entry after trailer", None, entryAfterTrailer(t)},
		{"none malformed trailer", None, malformedTrailer(t)},
		{"zstd trailing garbage in tar", Zstd, compress(t, Zstd, withGarbage)},
		{"gzip trailing garbage in tar", Gzip, compress(t, Gzip, withGarbage)},
		{"none trailing garbage in tar", None, withGarbage},
		{"zstd no end marker", Zstd, compress(t, Zstd, noMarker.Bytes())},
		{"none no end marker", None, noMarker.Bytes()},
		{"none half end marker", None, append(bytes.Clone(noMarker.Bytes()), make([]byte, 512)...)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			parent, target := newTargetParent(t)
			before := snapshot(t, parent)
			_, err := Extract(context.Background(), bytes.NewReader(tc.data), []string{target}, tc.c, nil)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			if errors.Is(err, ErrUnsafe) {
				t.Errorf("err %v is also ErrUnsafe", err)
			}
			if after := snapshot(t, parent); after != before {
				t.Errorf("directory changed:\n%s\nwant:\n%s", after, before)
			}
			assertNoLeftovers(t, parent)
		})
	}
}

// entryAfterTrailer returns a tar stream with a valid checksum trailer
// followed by one more entry, which the checksum does not cover.
func entryAfterTrailer(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	sum := newChecksumWriter(&buf)
	tw := tar.NewWriter(sum)
	writeEntries(t, tw, []tarEntry{{name: "0/", typ: tar.TypeDir}})
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := tw.WriteHeader(trailerHeader(sum.sum)); err != nil {
		t.Fatal(err)
	}
	writeEntries(t, tw, []tarEntry{{name: "0/late", typ: tar.TypeReg, body: "x"}})
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// malformedTrailer returns a tar stream whose trailer's value is not 8 hex
// digits.
func malformedTrailer(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	writeEntries(t, tw, []tarEntry{{name: "0", typ: tar.TypeReg, body: "x"}})
	hdr := trailerHeader(0)
	hdr.PAXRecords[trailerKey] = "not hex!"
	if err := tw.WriteHeader(hdr); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestZeroPaddingAccepted: zero blocks after the end-of-archive marker (GNU
// tar pads to 10 KiB records) are fine.
func TestZeroPaddingAccepted(t *testing.T) {
	src := corruptionSource(t)
	raw, _ := mustWrite(t, []string{src}, None, 0, nil)
	padded := append(bytes.Clone(raw), make([]byte, 10240)...)
	for _, c := range allCompressions {
		target := filepath.Join(tempDir(t), "t")
		if _, err := Extract(context.Background(), bytes.NewReader(compress(t, c, padded)), []string{target}, c, nil); err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		assertSameTree(t, src, target)
	}
}

// TestDamageThatLooksHostile: a damaged stream whose damage produces a
// hostile-looking entry is reported as ErrCorrupt (so the download is
// retried), not ErrUnsafe: the rest of the stream is read, and the checksum
// trailer, a tar header that does not parse, or the decompressor's checksum
// gives the damage away. The same hostile name in an intact archive is
// ErrUnsafe.
func TestDamageThatLooksHostile(t *testing.T) {
	// A name longer than 100 bytes is stored in a PAX record, which (unlike
	// the tar header block) has no checksum of its own.
	long := "0/" + strings.Repeat("a", 120)
	hostile := "../" + long[3:]
	entries := func(name string) []tarEntry {
		return []tarEntry{{name: "0/", typ: tar.TypeDir}, {name: name, typ: tar.TypeReg, body: "x"}, {name: "0/z", typ: tar.TypeReg, body: "z"}}
	}
	damaged := bytes.Replace(rawTar(t, entries(long)), []byte(long), []byte(hostile), 1)
	zstdDamaged := compress(t, Zstd, damaged)
	zstdDamagedFrame := compress(t, Zstd, rawTar(t, entries(hostile)))
	zstdDamagedFrame[len(zstdDamagedFrame)-1] ^= 0xff // the frame checksum, as if damaged after compression
	// Damage that makes a name hostile and the next header unreadable, where
	// no frame checksum covers them (no compression, or a raw zstd frame):
	// the trailer is never reached, but the header gives the damage away.
	damagedTwice := bytes.Clone(damaged)
	damagedTwice[bytes.LastIndex(damagedTwice, []byte("0/z"))+2] ^= 0x01

	cases := []struct {
		name string
		c    Compression
		data []byte
		want error
	}{
		{"intact, hostile", None, rawTar(t, entries(hostile)), ErrUnsafe},
		{"intact, hostile, zstd", Zstd, compress(t, Zstd, rawTar(t, entries(hostile))), ErrUnsafe},
		{"damaged tar", None, damaged, ErrCorrupt},
		{"damaged tar under zstd", Zstd, zstdDamaged, ErrCorrupt},
		{"damaged zstd frame", Zstd, zstdDamagedFrame, ErrCorrupt},
		{"damaged tar, then a header that does not parse", None, damagedTwice, ErrCorrupt},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			parent, target := newTargetParent(t)
			before := snapshot(t, parent)
			_, err := Extract(context.Background(), bytes.NewReader(tc.data), []string{target}, tc.c, nil)
			other := ErrCorrupt
			if tc.want == ErrCorrupt {
				other = ErrUnsafe
			}
			if !errors.Is(err, tc.want) || errors.Is(err, other) {
				t.Fatalf("err = %v, want %v only", err, tc.want)
			}
			if after := snapshot(t, parent); after != before {
				t.Errorf("directory changed:\n%s", after)
			}
			assertNoLeftovers(t, parent)
		})
	}
}

// TestSourceErrors: a failing reader is reported as itself, not as a corrupt
// stream; a source that ends too early is a truncated stream.
func TestSourceErrors(t *testing.T) {
	src := corruptionSource(t)
	boom := errors.New("connection reset")
	for _, c := range allCompressions {
		data, _ := mustWrite(t, []string{src}, c, 0, nil)
		parent, target := newTargetParent(t)
		before := snapshot(t, parent)

		r := io.MultiReader(bytes.NewReader(data[:len(data)/2]), errReader{boom})
		_, err := Extract(context.Background(), r, []string{target}, c, nil)
		if !errors.Is(err, boom) || errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v, want the reader's error and not ErrCorrupt", c, err)
		}

		r = io.MultiReader(bytes.NewReader(data[:len(data)/2]), errReader{io.ErrUnexpectedEOF})
		_, err = Extract(context.Background(), r, []string{target}, c, nil)
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", c, err)
		}
		if after := snapshot(t, parent); after != before {
			t.Errorf("%s: directory changed", c)
		}
		assertNoLeftovers(t, parent)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// cancellingReader cancels its context once n bytes have been read.
type cancellingReader struct {
	r      io.Reader
	n      int
	cancel context.CancelFunc
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n -= n
	if c.n <= 0 {
		c.cancel()
	}
	return n, err
}

// TestCancellation: cancelling mid-extraction leaves targets untouched and no
// staging behind.
func TestCancellation(t *testing.T) {
	src := corruptionSource(t)
	for _, c := range allCompressions {
		data, _ := mustWrite(t, []string{src}, c, 0, nil)
		parent, target := newTargetParent(t)
		before := snapshot(t, parent)
		ctx, cancel := context.WithCancel(context.Background())
		r := &cancellingReader{r: bytes.NewReader(data), n: len(data) / 3, cancel: cancel}
		_, err := Extract(ctx, r, []string{target}, c, nil)
		cancel()
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v, want context.Canceled", c, err)
		}
		if after := snapshot(t, parent); after != before {
			t.Errorf("%s: directory changed:\n%s", c, after)
		}
		assertNoLeftovers(t, parent)

		// Already cancelled: nothing happens at all.
		_, err = Extract(ctx, bytes.NewReader(data), []string{target}, c, nil)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s: err = %v, want context.Canceled", c, err)
		}
		assertNoLeftovers(t, parent)
	}
}
