package archive

import (
	"archive/tar"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"
)

// The checksum trailer. Every archive ends with a PAX global header (type
// 'g') whose only record, trailerKey, holds the CRC-32C of every tar byte
// before that header, as 8 lowercase hex digits; then comes the tar
// end-of-archive marker. Tar tools treat a global header as metadata and a
// vendor keyword as ignorable, so `tar -x` still reads the archive. zstd and
// gzip streams carry their own checksum as well; with compression none the
// trailer is the only one.
const trailerKey = "S3CACHE.crc32c"

// crcTable returns the table of CRC-32C (Castagnoli), computed in hardware
// on amd64 and arm64 (many GB/s), as strong against accidental damage as
// gzip's CRC-32 or the 32-bit checksum of a zstd frame. crc32 builds it once.
func crcTable() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) }

// trailerHeader returns the trailer for a stream whose bytes so far have the
// checksum sum.
func trailerHeader(sum uint32) *tar.Header {
	return &tar.Header{
		Typeflag:   tar.TypeXGlobalHeader,
		PAXRecords: map[string]string{trailerKey: fmt.Sprintf("%08x", sum)},
		Format:     tar.FormatPAX,
	}
}

// headerWriter is a tar writer: *tar.Writer or *tarWriter.
type headerWriter interface {
	WriteHeader(*tar.Header) error
	Flush() error
	Close() error
}

// finishTar ends the tar stream written by tw through sum: it pads the last
// entry, writes the checksum trailer, then the end-of-archive marker.
func finishTar(tw headerWriter, sum *checksumWriter) error {
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("finish tar stream: %w", err)
	}
	if err := tw.WriteHeader(trailerHeader(sum.sum)); err != nil {
		return fmt.Errorf("write checksum trailer: %w", err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("finish tar stream: %w", err)
	}
	return nil
}

// trailerSum returns the checksum recorded by a trailer header, and false if
// hdr is not a trailer. A trailer with a malformed value is an error.
func trailerSum(hdr *tar.Header) (uint32, bool, error) {
	if hdr.Typeflag != tar.TypeXGlobalHeader {
		return 0, false, nil
	}
	v, ok := hdr.PAXRecords[trailerKey]
	if !ok {
		return 0, false, nil
	}
	sum, err := strconv.ParseUint(v, 16, 32)
	if err != nil || len(v) != 8 {
		return 0, true, fmt.Errorf("%w: malformed checksum %q in the archive trailer", ErrCorrupt, v)
	}
	return uint32(sum), true, nil
}

// checkTrailer reports whether hdr, just read from stream, is the checksum
// trailer, and whether it matches the bytes before it (stream was marked
// before the header was read). A mismatch or a malformed trailer wraps
// ErrCorrupt.
func checkTrailer(hdr *tar.Header, stream *checksumReader) (bool, error) {
	want, isTrailer, err := trailerSum(hdr)
	if err != nil || !isTrailer {
		return false, err
	}
	// A header was read, so the stream is past the mark.
	if got := stream.markedSum(); got != want {
		return false, fmt.Errorf("%w: checksum mismatch: the archive records %08x, its content has %08x", ErrCorrupt, want, got)
	}
	return true, nil
}

// checksumWriter computes the checksum of the bytes written through it, or
// committed to the buffer its writer lends.
type checksumWriter struct {
	w     io.Writer
	lend  lender // w, if it lends its buffer; else nil
	last  []byte // the last space lent
	table *crc32.Table
	sum   uint32
}

// lender is a writer that lends the buffer it fills, so that a file's
// content can be read straight into it rather than copied there: space
// returns the buffer's unfilled part (never empty), and commit(n) appends the
// first n bytes of it to the stream. *frameWriter is one.
type lender interface {
	space() ([]byte, error)
	commit(n int)
}

func newChecksumWriter(w io.Writer) *checksumWriter {
	c := &checksumWriter{w: w, table: crcTable()}
	c.lend, _ = w.(lender)
	return c
}

// space is the space w lends, if it lends one: ok is false otherwise.
func (c *checksumWriter) space() (space []byte, ok bool, err error) {
	if c.lend == nil {
		return nil, false, nil
	}
	c.last, err = c.lend.space()
	return c.last, err == nil, err
}

// commit appends the first n bytes of the last space to the stream.
func (c *checksumWriter) commit(n int) {
	c.sum = crc32.Update(c.sum, c.table, c.last[:n])
	c.lend.commit(n)
	c.last = nil
}

func (c *checksumWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.sum = crc32.Update(c.sum, c.table, p[:n])
	return n, err
}

// checksumReader counts the bytes read through it and computes their
// checksum. mark asks it to remember the checksum at the next tar block
// boundary: that is where the next header starts, after the padding of the
// previous entry that tar.Reader.Next skips first.
type checksumReader struct {
	r     io.Reader
	table *crc32.Table
	n     int64  // bytes read so far
	sum   uint32 // checksum of those bytes
	// markAt is the offset whose checksum is wanted, -1 once it is known
	// (in marked).
	markAt int64
	marked uint32
}

func newChecksumReader(r io.Reader) *checksumReader {
	return &checksumReader{r: r, table: crcTable(), markAt: -1}
}

func (c *checksumReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	b := p[:n]
	if c.markAt >= 0 && c.markAt <= c.n+int64(n) {
		k := c.markAt - c.n
		c.sum = crc32.Update(c.sum, c.table, b[:k])
		c.marked, c.markAt = c.sum, -1
		b = b[k:]
	}
	c.sum = crc32.Update(c.sum, c.table, b)
	c.n += int64(n)
	return n, err
}

// mark asks for the checksum of the bytes before the next block boundary
// (now, if the count is at one).
func (c *checksumReader) mark() {
	c.markAt = c.n + (blockSize-c.n%blockSize)%blockSize
	if c.markAt == c.n {
		c.marked, c.markAt = c.sum, -1
	}
}

// markedSum returns the checksum asked for by mark. It is only valid once the
// stream has reached the marked offset, as it has when a header was read.
func (c *checksumReader) markedSum() uint32 {
	return c.marked
}
