package archive

import (
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Compression names an archive compression.
type Compression string

// The supported compressions.
const (
	Zstd Compression = "zstd"
	Gzip Compression = "gzip"
	None Compression = "none"
)

// Extension returns the object-name suffix: ".tar.zst", ".tar.gz", ".tar"
// (and "" for an unknown compression).
func (c Compression) Extension() string {
	switch c {
	case Zstd:
		return ".tar.zst"
	case Gzip:
		return ".tar.gz"
	case None:
		return ".tar"
	}
	return ""
}

// ParseCompression accepts "zstd", "gzip", "tgz" (= gzip) and "none"; any
// other value is an error naming what is allowed.
func ParseCompression(s string) (Compression, error) {
	switch s {
	case "zstd":
		return Zstd, nil
	case "gzip", "tgz":
		return Gzip, nil
	case "none":
		return None, nil
	}
	return "", fmt.Errorf("unknown compression %q: allowed values are zstd, gzip (or tgz), none", s)
}

// check returns an error if c is not one of the supported compressions.
func (c Compression) check() error {
	if c.Extension() == "" {
		return fmt.Errorf("unknown compression %q: allowed values are zstd, gzip, none", string(c))
	}
	return nil
}

// newCompressor wraps w in the compressor for c. Level 0 selects the
// compressor's default; zstd levels follow the zstd command line (1-22),
// gzip levels are 1-9 (or -1, -2). zstd is compressed on every core, as a
// sequence of frames (see frameWriter).
func newCompressor(w io.Writer, c Compression, level int) (io.WriteCloser, error) {
	switch c {
	case Zstd:
		return newFrameWriter(w, level, zstdBlockSize)
	case Gzip:
		if level == 0 {
			level = gzip.DefaultCompression
		}
		gz, err := gzip.NewWriterLevel(w, level)
		if err != nil {
			return nil, fmt.Errorf("start gzip compressor at level %d: %w", level, err)
		}
		return gz, nil
	case None:
		return nopWriteCloser{w}, nil
	}
	return nil, c.check()
}

// newDecompressor wraps r in the decompressor for c. The returned function
// releases the decompressor's resources (the zstd decoder runs goroutines)
// and must always be called.
func newDecompressor(r io.Reader, c Compression) (io.Reader, func(), error) {
	switch c {
	case Zstd:
		dec, err := zstd.NewReader(r,
			zstd.WithDecoderMaxMemory(zstdMaxMemory), // bounds the window, hence memory
			zstd.WithDecoderLowmem(false),
		)
		if err != nil {
			return nil, nil, err
		}
		return dec, dec.Close, nil
	case Gzip:
		// NewReader reads the gzip header, so a damaged stream can fail here.
		gz, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return gz, func() { _ = gz.Close() }, nil
	case None:
		return r, func() {}, nil
	}
	return nil, nil, c.check()
}

// abandon releases a compressor whose stream will not be used: without
// writing more if it can (a frameWriter drops what it holds), else by closing it.
func abandon(cw io.WriteCloser) {
	if f, ok := cw.(*frameWriter); ok {
		f.abort()
		return
	}
	_ = cw.Close()
}

// nopWriteCloser adds a Close that does nothing to a Writer.
type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
