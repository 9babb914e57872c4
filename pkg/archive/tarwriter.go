package archive

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
)

// tarWriter writes a tar stream through a checksumWriter, byte for byte what
// one tar.Writer writes, but reads each file's content straight into the
// buffer of the compressor when it lends one (zstd frames): a tar.Writer
// takes contents through Write, which copies them once more. On a save of
// node_modules that copy, into memory the kernel had just copied the file
// into, was a tenth of the CPU.
//
// The common headers (see appendHeader) are formatted here, byte for byte as
// a tar.Writer formats them; any other by a tar.Writer of its own: a
// tar.Writer keeps nothing from one entry to the next but the padding it
// owes, which tarWriter writes itself, so the headers are those of one
// tar.Writer.
type tarWriter struct {
	w     *checksumWriter
	head  []byte // the header being written
	buf   []byte // for contents when w does not lend
	left  int64  // content bytes the current entry still needs
	size  int64  // the current entry's size
	pad   int64  // zeros after its content, up to the block boundary
	zeros [2 * blockSize]byte
}

func newTarWriter(w *checksumWriter) *tarWriter {
	return &tarWriter{w: w}
}

// WriteHeader ends the current entry (its padding) and writes hdr. A regular
// file's content must follow (readFrom) before the next header.
func (t *tarWriter) WriteHeader(hdr *tar.Header) error {
	if err := t.Flush(); err != nil {
		return err
	}
	var err error
	if t.head, err = formatHeader(t.head[:0], hdr); err != nil {
		return err
	}
	if _, err := t.w.Write(t.head); err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeReg {
		t.left, t.size, t.pad = hdr.Size, hdr.Size, (blockSize-hdr.Size%blockSize)%blockSize
	}
	return nil
}

// formatHeader appends the header blocks of hdr to dst: the common headers
// by appendHeader, any other by a tar.Writer of its own.
func formatHeader(dst []byte, hdr *tar.Header) ([]byte, error) {
	if b, ok := appendHeader(dst, hdr); ok {
		return b, nil
	}
	buf := bytes.NewBuffer(dst)
	hw := tar.NewWriter(buf)
	if err := hw.WriteHeader(hdr); err != nil {
		return dst, err
	}
	// An entry without content may still owe padding (a global header's
	// records); a regular file's is owed after its content.
	if hdr.Typeflag != tar.TypeReg {
		if err := hw.Flush(); err != nil {
			return dst, err
		}
	}
	return buf.Bytes(), nil
}

// readFrom writes the current file's content, read from r: exactly the size
// its header gave. A file that ends early (it shrank after it was
// described) is an error; bytes beyond the size (it grew) are not read.
func (t *tarWriter) readFrom(r io.Reader) (int64, error) {
	var n int64
	for t.left > 0 {
		space, lent, err := t.w.space()
		if err != nil {
			return n, err
		}
		if !lent {
			if t.buf == nil {
				t.buf = make([]byte, copyBufferSize)
			}
			space = t.buf
		}
		space = space[:min(int64(len(space)), t.left)]
		k, err := io.ReadFull(r, space)
		if k > 0 {
			if lent {
				t.w.commit(k)
			} else if _, werr := t.w.Write(space[:k]); werr != nil {
				return n, werr
			}
			n, t.left = n+int64(k), t.left-int64(k)
		}
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return n, fmt.Errorf("file shrank while being read: got %d of %d bytes", n, t.size)
		case err != nil:
			return n, err
		}
	}
	return n, nil
}

// Flush pads the current entry to the block boundary; its content must have
// been written whole.
func (t *tarWriter) Flush() error {
	if t.left > 0 {
		return fmt.Errorf("archive/tar: missed writing %d bytes", t.left)
	}
	if t.pad > 0 {
		if _, err := t.w.Write(t.zeros[:t.pad]); err != nil {
			return err
		}
		t.pad = 0
	}
	return nil
}

// Close ends the stream: the padding of the last entry and the
// end-of-archive marker (two zero blocks).
func (t *tarWriter) Close() error {
	if err := t.Flush(); err != nil {
		return err
	}
	_, err := t.w.Write(t.zeros[:])
	return err
}
