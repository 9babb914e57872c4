package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/fspath"
)

// Extract reads a stream written by Write and restores entry i into
// targets[i]. Every target is extracted in full into a staging directory
// created next to it (same parent directory, hence same filesystem), then all
// targets are swapped into place. A target is either wholly replaced or left
// exactly as it was.
//
// A target whose index has no entry in the archive is left untouched. A
// target that exists is replaced whatever it is (a directory, a file, a
// symlink, which is replaced, not followed); a target that is a mount point
// gets its content replaced and stays the mount point. The parent directory
// of a target is created if missing. Leftovers of earlier restores of the
// targets whose process is gone are removed first: callers that may run
// concurrently must hold the targets' LockTargets locks.
//
// A hostile archive is refused as a whole with an error wrapping ErrUnsafe; a
// damaged or truncated stream gives an error wrapping ErrCorrupt. See the
// package documentation for the rules and the guarantees on failure.
func Extract(ctx context.Context, r io.Reader, targets []string, c Compression, log Logger) (stats Stats, err error) {
	return extract(ctx, r, targets, c, log, extractOptions{writers: defaultWriters, inFlight: defaultInFlight})
}

// extractOptions tune extract; tests change them.
type extractOptions struct {
	writers  int   // goroutines writing small files
	inFlight int64 // bytes of file contents read but not yet written
	// beforeWrite, if not nil, is called by a writer before it creates a
	// file, and its error fails the extraction (tests inject failures).
	beforeWrite func(path string) error
}

// extract is Extract with options.
func extract(ctx context.Context, r io.Reader, targets []string, c Compression, log Logger, opts extractOptions) (stats Stats, err error) {
	if err := c.check(); err != nil {
		return Stats{}, err
	}
	absTargets, err := checkTargets(targets)
	if err != nil {
		return Stats{}, err
	}
	if err := ctx.Err(); err != nil {
		return Stats{}, fmt.Errorf("extract: %w", err)
	}

	// Leftovers of earlier restores killed before they could clean up.
	for _, t := range absTargets {
		sweepTarget(t, warnOrDiscard(log))
	}

	x := &extraction{
		targets: absTargets,
		staged:  make([]*stagedTarget, len(absTargets)),
		seen:    make(map[string]seenEntry),
		src:     &sourceReader{ctx: ctx, r: r},
		warn:    warnOrDiscard(log),
		buf:     make([]byte, copyBufferSize),
		pool:    startWriterPool(ctx, opts.writers, opts.inFlight, opts.beforeWrite),
	}
	// On any failure no target has been changed (or the changes were undone):
	// stop the writers, remove every staging directory and report. No
	// goroutine of this extraction outlives it.
	defer func() {
		if err != nil {
			x.pool.abort()
			err = joinErrors(err, x.discard())
		}
	}()

	stream, closeStream, err := newDecompressor(x.src, c)
	if err != nil {
		return x.stats, x.streamError(fmt.Sprintf("open %s stream", c), err)
	}
	defer closeStream()

	// Steps 1 to 4 of the package documentation: stream, validate, stage,
	// verify the end of the stream.
	if err := x.readArchive(ctx, stream); err != nil {
		return x.stats, err
	}
	if err := x.pool.wait(); err != nil {
		return x.stats, err
	}
	if err := x.makeLinks(); err != nil {
		return x.stats, err
	}
	if err := x.applyDirMetadata(); err != nil {
		return x.stats, err
	}
	// Last chance to give up without touching anything.
	if err := ctx.Err(); err != nil {
		return x.stats, fmt.Errorf("extract: %w", err)
	}
	// Step 5: swap into place, then clean up.
	if err := x.swapAll(); err != nil {
		return x.stats, err
	}
	x.finish()
	return x.stats, nil
}

// checkTargets returns the targets as absolute paths. It refuses targets that
// cannot be swapped independently of each other: the filesystem root, the
// same path twice, or one target inside another.
func checkTargets(targets []string) ([]string, error) {
	abs := make([]string, len(targets))
	for i, t := range targets {
		if t == "" {
			return nil, fmt.Errorf("extract: target %d is an empty path", i)
		}
		a, err := filepath.Abs(t)
		if err != nil {
			return nil, fmt.Errorf("extract: target %s: %w", t, err)
		}
		if filepath.Dir(a) == a {
			return nil, fmt.Errorf("extract: target %s: cannot restore over a filesystem root", t)
		}
		abs[i] = a
	}
	for i, a := range abs {
		for j, b := range abs[:i] {
			if fspath.OverlapAnyForm(a, b) {
				return nil, fmt.Errorf("extract: targets %s and %s overlap", targets[j], targets[i])
			}
		}
	}
	return abs, nil
}

// dirMeta is a staged directory whose mode and mtime are applied once the
// whole archive is extracted (it must stay writable until then).
type dirMeta struct {
	path  string // in the staging directory
	index int    // target index
	root  bool   // the target itself, applied after the swap
	mode  fs.FileMode
	mtime time.Time // zero: leave as is
}

// apply sets the recorded mode and mtime on the directory p. p is always a
// real directory created by this extraction, never a symlink.
func (d dirMeta) apply(p string) error {
	if err := os.Chmod(p, d.mode); err != nil {
		return fmt.Errorf("set mode of %s: %w", p, err)
	}
	if !d.mtime.IsZero() {
		if err := os.Chtimes(p, time.Time{}, d.mtime); err != nil {
			return fmt.Errorf("set mtime of %s: %w", p, err)
		}
	}
	return nil
}

// extraction holds the state of one Extract call.
type extraction struct {
	targets []string        // absolute target paths, by index
	staged  []*stagedTarget // by index; nil until the archive has an entry for it
	// seen records every entry name met so far (canonical, without trailing
	// slash). It is what enforces the rules: no duplicates, parents must be
	// directories we created, hard links only to files we extracted.
	seen  map[string]seenEntry
	dirs  []dirMeta // in creation order: parents before children
	src   *sourceReader
	warn  warnFunc
	buf   []byte // copy buffer for file contents
	stats Stats
	// pool writes the small files; the reader creates everything else.
	pool *writerPool
	// links are the hard links, made in archive order once every file is
	// written (a link's file may still be in a writer's queue when it is
	// met).
	links []pendingLink
}

// pendingLink is a hard link entry, made by makeLinks.
type pendingLink struct {
	name           string // entry name, for errors
	existing, path string // in the staging directory
}

// makeLinks creates the hard links, in archive order. Their files are all
// written; the new names share their inodes, hence their modes and mtimes.
func (x *extraction) makeLinks() error {
	for _, l := range x.links {
		if err := os.Link(l.existing, l.path); err != nil {
			return fmt.Errorf("extract %q: %w", l.name, err)
		}
	}
	return nil
}

// readArchive extracts every entry of the tar stream into the staging
// directories, then verifies the checksum trailer and the end of the stream.
func (x *extraction) readArchive(ctx context.Context, stream io.Reader) error {
	counted := newChecksumReader(stream)
	tr := tar.NewReader(counted)
	sealed := false // the checksum trailer was met, and matched
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("extract: %w", err)
		}
		if err := x.pool.err(); err != nil {
			return err // a writer failed: stop reading
		}
		// Read what an entry left of its content (a skipped one, a directory
		// with a size), so that the next header starts at the next block
		// boundary: that is where the checksum of a trailer ends and where
		// verifyEnd counts from.
		if err := x.skipContent(tr); err != nil {
			return err
		}
		before := counted.n
		counted.mark()
		hdr, err := tr.Next()
		if err == io.EOF {
			if err := x.verifyEnd(counted, before); err != nil {
				return err
			}
			if !sealed {
				return fmt.Errorf("%w: the archive has no checksum trailer", ErrCorrupt)
			}
			return nil
		}
		// tar.ErrInsecurePath (only with GODEBUG=tarinsecurepath=0) comes with
		// a valid header; extractEntry's own checks refuse such names.
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			return x.streamError("read tar header", err)
		}
		if sealed {
			return fmt.Errorf("%w: entry %q after the checksum trailer", ErrCorrupt, hdr.Name)
		}
		if sealed, err = checkTrailer(hdr, counted); err != nil {
			return err
		}
		if sealed {
			continue
		}
		if err := x.extractEntry(hdr, tr); err != nil {
			if poolErr := x.pool.err(); poolErr != nil {
				return poolErr // the first failure, a writer's
			}
			if errors.Is(err, ErrUnsafe) {
				return x.refuse(tr, counted, err)
			}
			return err
		}
	}
}

// skipContent reads and discards what is left of the current entry's
// content.
func (x *extraction) skipContent(tr *tar.Reader) error {
	if _, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, tr, x.buf); err != nil {
		return x.streamError("read content", err)
	}
	return nil
}

// verifyEnd is called when the tar reader reports the end of the archive. It
// checks that the archive really ended and reads the stream to its end, so
// that the decompressor verifies its checksum.
//
// The tar reader also reports the end when the stream simply stops between
// two entries, which is what a truncated stream looks like. So the last Next
// call, which started at offset before, must have consumed the previous
// entry's padding plus the two zero blocks of the end-of-archive marker.
// After them, only zero bytes (padding some tar writers add) may follow.
func (x *extraction) verifyEnd(stream *checksumReader, before int64) error {
	padding := (blockSize - before%blockSize) % blockSize
	if got := stream.n - before - padding; got != 2*blockSize {
		return fmt.Errorf("%w: the stream ends without the tar end-of-archive marker (truncated)", ErrCorrupt)
	}
	for {
		n, err := stream.Read(x.buf)
		for _, b := range x.buf[:n] {
			if b != 0 {
				return fmt.Errorf("%w: data after the end of the tar archive", ErrCorrupt)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return x.streamError("read end of stream", err)
		}
	}
}

// refuse returns unsafeErr, the refusal of a hostile entry, unless the stream
// turns out to be damaged. A damaged stream can produce entries that look
// hostile, so the rest of the stream is read: the checksum trailer (if the
// tar stream still leads to one), a tar header that does not parse, or the
// decompressor's checksums give damage away, and a damaged stream is
// reported as ErrCorrupt: a fresh download may then succeed, while a hostile
// archive will not improve. A header that does not parse must count: raw
// frames have no checksum of their own to tell.
func (x *extraction) refuse(tr *tar.Reader, stream *checksumReader, unsafeErr error) error {
	var damage error
	for {
		if err := x.skipContent(tr); err != nil {
			damage = err
			break
		}
		stream.mark()
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			damage = x.streamError("read tar header", err)
			break
		}
		sealed, err := checkTrailer(hdr, stream)
		if err != nil {
			return fmt.Errorf("%w (after refusing it: %v)", err, unsafeErr)
		}
		if sealed {
			break
		}
	}
	if _, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, stream, x.buf); err != nil {
		return x.streamError(fmt.Sprintf("read stream after refusing it (%v)", unsafeErr), err)
	}
	if damage != nil {
		return fmt.Errorf("%w (after refusing it: %v)", damage, unsafeErr)
	}
	return unsafeErr
}

// streamError describes err, met while reading the decompressed stream to do
// what. If the caller's reader failed or ctx was cancelled, that is the
// error. Otherwise (a decompression or tar error, or the source ending too
// early) the stream is damaged: the error wraps ErrCorrupt.
func (x *extraction) streamError(what string, err error) error {
	if srcErr := x.src.failure(); srcErr != nil && !errors.Is(srcErr, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%s: %w", what, srcErr)
	}
	return fmt.Errorf("%w: %s: %w", ErrCorrupt, what, err)
}

// applyDirMetadata gives every staged directory except the target roots its
// recorded mode and mtime. x.dirs lists parents before children, so walking
// it backwards handles the deepest first: a directory made read-only (or not
// searchable) no longer needs to be entered, and adding children can no
// longer change a parent's mtime. The roots are done by finish, after the
// swap, because moving a directory to another parent needs write permission
// on it.
func (x *extraction) applyDirMetadata() error {
	for i := len(x.dirs) - 1; i >= 0; i-- {
		d := x.dirs[i]
		if d.root {
			continue
		}
		if err := d.apply(d.path); err != nil {
			return fmt.Errorf("extract: %w", err)
		}
	}
	return nil
}

// swapAll moves every staged target into place. If one fails, the ones
// already swapped are put back, so that no target is changed.
func (x *extraction) swapAll() error {
	var done []*stagedTarget
	for _, s := range x.staged {
		if s == nil {
			continue // no entry for this target in the archive: leave it alone
		}
		if err := s.swapIn(); err != nil {
			for i := len(done) - 1; i >= 0; i-- {
				err = joinErrors(err, done[i].swapOut())
			}
			return err
		}
		done = append(done, s)
	}
	return nil
}

// finish runs after a successful swap: it removes the staging directories,
// which hold the previous contents, then applies the mode and mtime of the
// target roots that are directories (last, because removing a staging
// directory inside a mount point changes its mtime). The restore has
// succeeded by then, so problems are warnings.
func (x *extraction) finish() {
	for _, s := range x.staged {
		if s == nil {
			continue
		}
		if s.old != "" {
			if err := removeTree(s.old); err != nil {
				x.warn("restored %s, but could not remove its previous content: %v", s.target, err)
			}
		}
		if err := s.remove(); err != nil {
			x.warn("restored %s, but: %v", s.target, err)
		}
	}
	for _, d := range x.dirs {
		if d.root {
			if err := d.apply(x.targets[d.index]); err != nil {
				x.warn("restored %s, but: %v", x.targets[d.index], err)
			}
		}
	}
}

// discard removes every staging directory, after a failure. Targets are not
// touched: by then they hold their previous content.
func (x *extraction) discard() error {
	var errs []error
	for _, s := range x.staged {
		if s != nil {
			errs = append(errs, s.remove())
		}
	}
	return errors.Join(errs...)
}

// joinErrors returns err, joined with extra if extra is not nil.
func joinErrors(err, extra error) error {
	if extra == nil {
		return err
	}
	return errors.Join(err, extra)
}
