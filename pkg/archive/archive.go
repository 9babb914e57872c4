package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// ErrUnsafe marks the refusal of a hostile archive: an entry that would land
// outside its target, write through a symlink, link outside the tree being
// restored, repeat a name, or use an unsupported entry type. Nothing of such
// an archive is applied. Test with errors.Is.
var ErrUnsafe = errors.New("unsafe archive")

// ErrCorrupt marks a damaged stream: a checksum mismatch (the archive's
// trailer or the compressor's), a missing trailer, a truncated stream, a bad
// tar header, or data after the end of the archive. A fresh download of
// the same object may succeed. Test with errors.Is.
var ErrCorrupt = errors.New("corrupt archive")

// Logger receives what a person watching the job should see: information (a
// wait for another job's lock) and warnings (a skipped entry or device node,
// leftovers of a killed restore removed). *buildkite.Log is one; a nil Logger
// discards everything. pkg/s3 declares the same interface: the caller passes
// one log to both.
type Logger interface {
	Infof(format string, args ...any)
	Warnf(format string, args ...any)
}

// warnFunc is how the package's internals report a warning.
type warnFunc func(format string, args ...any)

// Stats counts what Write stored or Extract restored.
type Stats struct {
	// Entries is the number of tar entries written or restored (skipped
	// device nodes, FIFOs and sockets are not counted).
	Entries int64
	// Bytes is the uncompressed size of the regular files' contents.
	Bytes int64
}

const (
	// copyBufferSize is the buffer used to stream file contents.
	copyBufferSize = 1 << 20
	// blockSize is the tar block size.
	blockSize = 512
	// zstdMaxMemory bounds the zstd window the decoder accepts, hence its
	// memory use, whatever the stream claims.
	zstdMaxMemory = 1 << 30
)

// warnOrDiscard returns log's Warnf, or a warnFunc that drops everything if
// log is nil.
func warnOrDiscard(log Logger) warnFunc {
	if log == nil {
		return func(string, ...any) {}
	}
	return log.Warnf
}

// unsafeEntry returns an ErrUnsafe error about the entry called name.
func unsafeEntry(name, format string, args ...any) error {
	return fmt.Errorf("%w: entry %q: %s", ErrUnsafe, name, fmt.Sprintf(format, args...))
}

// ctxReader stops reading once ctx is cancelled, so that long copies notice
// cancellation between two buffers.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// sourceReader wraps the reader given to Extract. It stops once ctx is
// cancelled, and remembers the first error it returned (other than io.EOF), so
// that a failing download or a cancellation is reported as such and not
// mistaken for a corrupt stream. The zstd decoder reads from it in its own
// goroutine, hence the mutex.
type sourceReader struct {
	ctx context.Context
	r   io.Reader

	mu  sync.Mutex
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	if err := s.ctx.Err(); err != nil {
		s.record(err)
		return 0, err
	}
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.record(err)
	}
	return n, err
}

func (s *sourceReader) record(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

// failure returns the first error the source returned, if any.
func (s *sourceReader) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}
