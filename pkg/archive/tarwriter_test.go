package archive

import (
	"archive/tar"
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/klauspost/compress/zstd"
)

// tarWriter writes what one tar.Writer writes for the same headers and
// contents, whether it reads the contents into the frames a frameWriter
// lends (cut small, so that contents and headers straddle them) or copies
// them through its buffer.
func TestTarWriterWritesWhatTarWriterWrites(t *testing.T) {
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	type entry struct {
		hdr  tar.Header
		body []byte
	}
	var entries []entry
	add := func(name string, typ byte, link string, body []byte) {
		hdr := tar.Header{Name: name, Typeflag: typ, Linkname: link, Mode: 0o644, ModTime: mtime, Format: tar.FormatPAX}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(body))
		}
		entries = append(entries, entry{hdr, body})
	}
	add("0/", tar.TypeDir, "", nil)
	for i, size := range []int{0, 1, 511, 512, 513, 3000, 70_000, 1 << 20} {
		add("0/f"+strings.Repeat("x", i), tar.TypeReg, "", testInput(size, uint64(i)))
	}
	add("0/"+strings.Repeat("long-name/", 30)+"f", tar.TypeReg, "", testInput(700, 9)) // PAX path
	add("0/bytes-\xff\xfe", tar.TypeReg, "", testInput(10, 10))
	add("0/link", tar.TypeSymlink, "f", nil)
	add("0/hard", tar.TypeLink, "0/f", nil)

	// write writes the entries and the trailer with a tar.Writer or a
	// tarWriter, through a checksumWriter into w.
	write := func(w io.Writer, own bool) {
		sum := newChecksumWriter(w)
		var tw headerWriter = tar.NewWriter(sum)
		if own {
			tw = newTarWriter(sum)
		}
		for _, e := range entries {
			if err := tw.WriteHeader(&e.hdr); err != nil {
				t.Fatalf("header %s: %v", e.hdr.Name, err)
			}
			var err error
			if own {
				// One byte per read: every content straddles every space lent.
				var n int64
				n, err = tw.(*tarWriter).readFrom(iotest.OneByteReader(bytes.NewReader(e.body)))
				if err == nil && n != int64(len(e.body)) {
					t.Fatalf("%s: read %d bytes of %d", e.hdr.Name, n, len(e.body))
				}
			} else {
				_, err = tw.(*tar.Writer).Write(e.body)
			}
			if err != nil {
				t.Fatalf("content of %s: %v", e.hdr.Name, err)
			}
		}
		if err := finishTar(tw, sum); err != nil {
			t.Fatal(err)
		}
	}

	var want, copied, framed bytes.Buffer
	write(&want, false)
	write(&copied, true)
	if !bytes.Equal(copied.Bytes(), want.Bytes()) {
		t.Fatalf("copied: %d bytes unlike tar.Writer's %d", copied.Len(), want.Len())
	}
	fw, err := newFrameWriter(&framed, 1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	write(fw, true)
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	dec, err := zstd.NewReader(&framed)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	got, err := io.ReadAll(dec)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("read into frames: %d bytes unlike tar.Writer's %d", len(got), want.Len())
	}
}

// A file is stored with the size its header gave: one that grew since is cut
// there; one that shrank is an error, and no header can follow its content.
func TestTarWriterContentOfAChangedSize(t *testing.T) {
	for _, lend := range []bool{false, true} {
		var raw bytes.Buffer
		var out io.Writer = &raw
		var fw *frameWriter
		if lend {
			var err error
			if fw, err = newFrameWriter(&raw, 1, 1000); err != nil {
				t.Fatal(err)
			}
			out = fw
		}
		tw := newTarWriter(newChecksumWriter(out))
		if err := tw.WriteHeader(&tar.Header{Name: "grown", Typeflag: tar.TypeReg, Size: 1500, Format: tar.FormatPAX}); err != nil {
			t.Fatal(err)
		}
		if n, err := tw.readFrom(bytes.NewReader(testInput(4000, 1))); n != 1500 || err != nil {
			t.Errorf("lend %t: grown file: read %d, %v; want 1500", lend, n, err)
		}
		if err := tw.WriteHeader(&tar.Header{Name: "shrunk", Typeflag: tar.TypeReg, Size: 5000, Format: tar.FormatPAX}); err != nil {
			t.Fatal(err)
		}
		n, err := tw.readFrom(bytes.NewReader(make([]byte, 3000)))
		if n != 3000 || err == nil || !strings.Contains(err.Error(), "file shrank while being read: got 3000 of 5000 bytes") {
			t.Errorf("lend %t: shrunk file: read %d, %v; want 3000 and the file shrank", lend, n, err)
		}
		if err := tw.WriteHeader(&tar.Header{Name: "next", Typeflag: tar.TypeDir, Format: tar.FormatPAX}); err == nil {
			t.Errorf("lend %t: a header after a short content was written", lend)
		}
		if fw != nil {
			fw.abort()
		}
	}
}
