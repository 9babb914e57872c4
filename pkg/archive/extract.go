package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/fspath"
)

// implicitDirMode is the mode of a parent directory that has no entry of its
// own in the archive (archives made by Write always have one).
const implicitDirMode fs.FileMode = 0o755

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
func Extract(ctx context.Context, r io.Reader, targets []string, c Compression, warn Warner) (stats Stats, err error) {
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
		sweepTarget(t, warnOrDiscard(warn))
	}

	x := &extraction{
		targets: absTargets,
		staged:  make([]*stagedTarget, len(absTargets)),
		seen:    make(map[string]seenEntry),
		src:     &sourceReader{ctx: ctx, r: r},
		warn:    warnOrDiscard(warn),
		buf:     make([]byte, copyBufferSize),
	}
	// On any failure no target has been changed (or the changes were undone):
	// remove every staging directory and report.
	defer func() {
		if err != nil {
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
			if fspath.Overlap(a, b) {
				return nil, fmt.Errorf("extract: targets %s and %s overlap", targets[j], targets[i])
			}
		}
	}
	return abs, nil
}

// entryKind is what an entry name was extracted as.
type entryKind uint8

const (
	kindDir     entryKind = iota + 1 // a directory we created
	kindFile                         // a regular file (also from a hard link entry)
	kindSymlink                      // a symlink we created
	kindSkipped                      // a device node or FIFO entry, never created
)

// seenEntry records an entry name already met in the archive.
type seenEntry struct {
	kind entryKind
	// implicit: a directory created because an entry needed it as a parent,
	// not (yet) by an entry of its own.
	implicit bool
	// dir is the index in extraction.dirs of a directory's metadata.
	dir int
	// unrepresentable: skipped because this system cannot hold its name
	// (kind is then what it would have been). Nothing exists on disk.
	unrepresentable bool
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
	warn  Warner
	buf   []byte // copy buffer for file contents
	stats Stats
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
			if errors.Is(err, ErrUnsafe) {
				return x.refuse(tr, counted, err)
			}
			return err
		}
	}
}

// extractEntry handles one entry in three stages. checkEntry refuses a
// hostile entry and planEntry decides whether an acceptable one is skipped;
// both only read the extraction's state, so a refused entry changes nothing.
// Then skipEntry records and warns about a skipped entry, or createEntry
// creates it in the staging directory of its target.
func (x *extraction) extractEntry(hdr *tar.Header, content io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // PAX global header: metadata for tar tools, creates nothing
	}
	c, err := x.checkEntry(hdr)
	if err != nil {
		return err
	}
	p := x.planEntry(c)
	if p.skip != notSkipped {
		x.skipEntry(p)
		return nil
	}
	return x.createEntry(p, content)
}

// checkedEntry is an entry that passed checkEntry, with what the checks
// found out that the later stages need.
type checkedEntry struct {
	entryName   // the parsed hdr.Name
	hdr         *tar.Header
	missing     []string  // parents that do not exist yet, nearest first
	link        entryName // for a hard link: the file it links to
	implicitDir int       // index in x.dirs, see checkNewName; or -1
}

// checkEntry applies the rules of step 2 of the package documentation to one
// entry, in this order: its type, its name, its parents, then what a link
// points to. A broken rule is an error wrapping ErrUnsafe.
func (x *extraction) checkEntry(hdr *tar.Header) (checkedEntry, error) {
	if err := checkType(hdr); err != nil {
		return checkedEntry{}, err
	}
	c := checkedEntry{hdr: hdr}
	var err error
	if c.entryName, c.implicitDir, err = x.checkNewName(hdr); err != nil {
		return checkedEntry{}, err
	}
	if c.missing, err = x.missingParents(c.entryName); err != nil {
		return checkedEntry{}, err
	}
	if c.link, err = x.checkLink(c.entryName, hdr); err != nil {
		return checkedEntry{}, err
	}
	return c, nil
}

// checkType refuses an entry of a type this package does not handle, and a
// sparse file. (A PAX global header never gets here: extractEntry ignores
// it.)
func checkType(hdr *tar.Header) error {
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		// Handled. (archive/tar turns the legacy TypeRegA into TypeReg or
		// TypeDir, and consumes PAX and GNU long-name headers itself.)
	default:
		return unsafeEntry(hdr.Name, "unsupported entry type %q", hdr.Typeflag)
	}
	if isSparse(hdr) {
		return unsafeEntry(hdr.Name, "sparse files are not supported")
	}
	return nil
}

// checkNewName parses the entry's name, which must not have been met before.
// The one exception is a directory entry for a directory created earlier as
// a missing parent: it gives that directory its mode and mtime, and
// implicitDir is the directory's index in x.dirs (otherwise -1).
func (x *extraction) checkNewName(hdr *tar.Header) (e entryName, implicitDir int, err error) {
	isDir := hdr.Typeflag == tar.TypeDir
	if e, err = parseEntryName(hdr.Name, isDir, len(x.targets)); err != nil {
		return entryName{}, -1, err
	}
	prev, exists := x.seen[e.name]
	switch {
	case !exists:
		return e, -1, nil
	case isDir && prev.kind == kindDir && prev.implicit:
		return e, prev.dir, nil
	}
	return entryName{}, -1, unsafeEntry(hdr.Name, "appears more than once")
}

// checkLink checks what a symlink or hard link entry e points to, and
// returns a hard link's parsed target.
func (x *extraction) checkLink(e entryName, hdr *tar.Header) (entryName, error) {
	switch hdr.Typeflag {
	case tar.TypeSymlink:
		// Any target is allowed (virtualenvs have absolute ones): the link is
		// created as is and never followed by this package.
		if hdr.Linkname == "" || strings.ContainsRune(hdr.Linkname, 0) {
			return entryName{}, unsafeEntry(hdr.Name, "symlink target is empty or contains NUL")
		}
	case tar.TypeLink:
		return x.checkHardLink(e, hdr.Linkname)
	}
	return entryName{}, nil
}

// skipReason says why an acceptable entry is not created.
type skipReason uint8

const (
	notSkipped          skipReason = iota
	unrepresentableName            // this system cannot hold its name
	linkToSkipped                  // a hard link to a file skipped for its name
	deviceOrFIFO                   // not restored by this package
)

// entryPlan is what will be done with a checked entry.
type entryPlan struct {
	checkedEntry
	kind entryKind // what it is extracted as
	skip skipReason
	// For unrepresentableName: the leading part of the name this system
	// cannot hold, and why (see unrepresentable).
	prefix string
	reason error
}

// planEntry decides whether the checked entry c is created or skipped: what
// this system cannot hold and what this package does not restore is
// skipped.
func (x *extraction) planEntry(c checkedEntry) entryPlan {
	p := entryPlan{checkedEntry: c, kind: kindOf(c.hdr.Typeflag)}
	prefix, reason := unrepresentable(c.entryName)
	switch {
	case reason != nil:
		p.skip, p.prefix, p.reason = unrepresentableName, prefix, reason
	case c.hdr.Typeflag == tar.TypeLink && x.seen[c.link.name].unrepresentable:
		p.skip = linkToSkipped
	case p.kind == kindSkipped:
		p.skip = deviceOrFIFO
	}
	return p
}

// skipEntry records a skipped entry, so that the rules still apply to the
// entries after it, and warns about it. Nothing is created, not even the
// entry's missing parents.
func (x *extraction) skipEntry(p entryPlan) {
	switch p.skip {
	case unrepresentableName:
		x.skipUnrepresentable(p.entryName, p.kind, p.prefix, p.reason)
	case linkToSkipped:
		x.warn("skipping %q: it is a hard link to %q, which was skipped", p.hdr.Name, p.hdr.Linkname)
		x.seen[p.name] = seenEntry{kind: p.kind, unrepresentable: true}
	case deviceOrFIFO:
		x.warn("skipping %q: device nodes and FIFOs are not restored", p.hdr.Name)
		x.seen[p.name] = seenEntry{kind: kindSkipped}
	}
}

// createEntry creates the planned entry p in the staging directory of its
// target, which is created on first use: first the entry's missing parents,
// outermost first, then the entry itself.
func (x *extraction) createEntry(p entryPlan, content io.Reader) error {
	s, err := x.stage(p.index)
	if err != nil {
		return fmt.Errorf("extract %q: %w", p.hdr.Name, err)
	}
	for i := len(p.missing) - 1; i >= 0; i-- {
		if err := x.makeDir(s, p.index, p.missing[i], implicitDirMode, time.Time{}, true); err != nil {
			return fmt.Errorf("extract %q: create parent %q: %w", p.hdr.Name, p.missing[i], err)
		}
	}
	if err := x.makeEntry(s, p, content); err != nil {
		return fmt.Errorf("extract %q: %w", p.hdr.Name, err)
	}
	x.stats.Entries++
	return nil
}

// makeEntry creates the entry p itself in the staging area s, its parents
// existing, and records it.
func (x *extraction) makeEntry(s *stagedTarget, p entryPlan, content io.Reader) error {
	mode := fs.FileMode(p.hdr.Mode) & fs.ModePerm // no setuid, setgid, sticky
	if p.hdr.Typeflag == tar.TypeDir {
		if p.implicitDir < 0 {
			return x.makeDir(s, p.index, p.name, mode, p.hdr.ModTime, false)
		}
		x.dirs[p.implicitDir].mode = mode
		x.dirs[p.implicitDir].mtime = p.hdr.ModTime
		x.seen[p.name] = seenEntry{kind: kindDir, dir: p.implicitDir}
		return nil
	}
	dst, err := s.path(p.rel)
	if err != nil {
		return err
	}
	switch p.hdr.Typeflag {
	case tar.TypeReg:
		n, err := x.writeFile(dst, content, mode, p.hdr.ModTime)
		x.stats.Bytes += n
		if err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := os.Symlink(p.hdr.Linkname, dst); err != nil {
			return err
		}
	case tar.TypeLink:
		existing, err := s.path(p.link.rel)
		if err != nil {
			return err
		}
		// The new name shares the inode, hence the mode and mtime, of the
		// file it links to, which were applied when that file was written.
		if err := os.Link(existing, dst); err != nil {
			return err
		}
	}
	x.seen[p.name] = seenEntry{kind: p.kind}
	return nil
}

// kindOf returns what an entry of type typ is extracted as.
func kindOf(typ byte) entryKind {
	switch typ {
	case tar.TypeDir:
		return kindDir
	case tar.TypeSymlink:
		return kindSymlink
	case tar.TypeReg, tar.TypeLink:
		return kindFile
	}
	return kindSkipped
}

// skipUnrepresentable records the entry e (of kind kind), whose name this
// system cannot hold from prefix on, as skipped. It warns once per prefix:
// the entries below a skipped directory are skipped silently. Nothing is
// created, not even the missing parents of e.
func (x *extraction) skipUnrepresentable(e entryName, kind entryKind, prefix string, reason error) {
	if prev, ok := x.seen[prefix]; !ok || !prev.unrepresentable {
		if prefix == e.name {
			x.warn("skipping %q: this system cannot hold its name (%v)", prefix, reason)
		} else {
			x.warn("skipping %q and everything below it: this system cannot hold its name (%v)", prefix, reason)
			// Remember the directory, so that what else is below it is
			// skipped silently.
			x.seen[prefix] = seenEntry{kind: kindDir, implicit: true, unrepresentable: true}
		}
	}
	x.seen[e.name] = seenEntry{kind: kind, unrepresentable: true}
}

// isSparse reports whether hdr describes a sparse file (PAX GNU.sparse.*
// records). Write never produces them, and their data layout would defeat
// the end-of-archive check.
func isSparse(hdr *tar.Header) bool {
	for key := range hdr.PAXRecords {
		if strings.HasPrefix(key, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// missingParents checks the ancestors of e inside its target, nearest first,
// and returns those that do not exist yet; they will be created as plain
// directories. An ancestor that exists as anything but a directory created
// by this extraction refuses the entry: this is what stops every write
// through a symlink, and a file under a file.
func (x *extraction) missingParents(e entryName) ([]string, error) {
	var missing []string
	for p := path.Dir(e.name); p != "."; p = path.Dir(p) {
		prev, ok := x.seen[p]
		if !ok {
			missing = append(missing, p)
			continue
		}
		if prev.kind != kindDir {
			return nil, unsafeEntry(e.name, "parent %q is not a directory", p)
		}
		break // an existing directory's own parents were checked when it was made
	}
	return missing, nil
}

// checkHardLink returns the parsed target of a hard link entry e. The target
// must be a regular file already extracted for the same target index, so a
// link can neither leave the tree being restored nor point at a symlink.
func (x *extraction) checkHardLink(e entryName, linkname string) (entryName, error) {
	t, reason := checkName(linkname, false, len(x.targets))
	if reason != "" {
		return entryName{}, unsafeEntry(e.name, "hard link target %q: %s", linkname, reason)
	}
	if t.index != e.index {
		return entryName{}, unsafeEntry(e.name, "hard link target %q is outside target %d", linkname, e.index)
	}
	if prev, ok := x.seen[t.name]; !ok || prev.kind != kindFile {
		return entryName{}, unsafeEntry(e.name, "hard link target %q is not a regular file extracted before it", linkname)
	}
	return t, nil
}

// stage returns the staging area of target index, creating it on first use.
func (x *extraction) stage(index int) (*stagedTarget, error) {
	if s := x.staged[index]; s != nil {
		return s, nil
	}
	s, err := newStagedTarget(x.targets[index])
	if err != nil {
		return nil, err
	}
	x.staged[index] = s
	return s, nil
}

// makeDir creates the directory called name (in target index) in the staging
// area s and records it. It is created 0o700 so that it can be filled; its
// mode and mtime are applied by applyDirMetadata or finish.
func (x *extraction) makeDir(s *stagedTarget, index int, name string, mode fs.FileMode, mtime time.Time, implicit bool) error {
	rel := relOf(index, name)
	p, err := s.path(rel)
	if err != nil {
		return err
	}
	// Mkdir fails if anything exists at p: nothing is ever reused.
	if err := os.Mkdir(p, 0o700); err != nil {
		return err
	}
	x.dirs = append(x.dirs, dirMeta{path: p, index: index, root: rel == "", mode: mode, mtime: mtime})
	x.seen[name] = seenEntry{kind: kindDir, implicit: implicit, dir: len(x.dirs) - 1}
	return nil
}

// writeFile creates the regular file dst with the entry's content, then
// applies its mode and mtime. Returns the number of content bytes written.
func (x *extraction) writeFile(dst string, content io.Reader, mode fs.FileMode, mtime time.Time) (int64, error) {
	// O_EXCL: never reuse an existing file or symlink. O_NOFOLLOW (unix):
	// belt and braces against a symlink in the last component.
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|openNoFollow, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := x.copyContent(f, content)
	if err == nil {
		err = f.Chmod(mode) // on the open descriptor: no path lookup
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err == nil && !mtime.IsZero() {
		// dst is the regular file just created in our private staging
		// directory (O_EXCL), not a symlink.
		err = os.Chtimes(dst, time.Time{}, mtime)
	}
	return n, err
}

// copyContent copies an entry's content to dst with the 1 MiB buffer. Read
// errors are classified by streamError (corrupt stream or failing source);
// write errors (a full disk) are returned as they are.
func (x *extraction) copyContent(dst io.Writer, src io.Reader) (int64, error) {
	var written int64
	for {
		n, rerr := src.Read(x.buf)
		if n > 0 {
			if _, werr := dst.Write(x.buf[:n]); werr != nil {
				return written, werr
			}
			written += int64(n)
		}
		if rerr == io.EOF {
			return written, nil
		}
		if rerr != nil {
			return written, x.streamError("read content", rerr)
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
// hostile, so the rest of the stream is read (which verifies the checksum
// trailer, if the tar stream still leads to one, then the decompressor's),
// and a damaged one is reported as ErrCorrupt: a fresh download may then
// succeed, while a hostile archive will not improve.
func (x *extraction) refuse(tr *tar.Reader, stream *checksumReader, unsafeErr error) error {
	for {
		if err := x.skipContent(tr); err != nil {
			break // drained below
		}
		stream.mark()
		hdr, err := tr.Next()
		if err != nil {
			break // the end, or a stream too damaged to tell: drained below
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
