package archive

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"
)

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

// implicitDirMode is the mode of a parent directory that has no entry of its
// own in the archive (archives made by Write always have one).
const implicitDirMode fs.FileMode = 0o755

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
		if err := x.writeFile(p.hdr, dst, content, mode, s.umask); err != nil {
			return err
		}
		x.stats.Bytes += p.hdr.Size
	case tar.TypeSymlink:
		if err := os.Symlink(p.hdr.Linkname, dst); err != nil {
			return err
		}
	case tar.TypeLink:
		existing, err := s.path(p.link.rel)
		if err != nil {
			return err
		}
		// Made by makeLinks once every file is written: the file may still
		// be in a writer's queue.
		x.links = append(x.links, pendingLink{name: p.hdr.Name, existing: existing, path: dst})
	}
	x.seen[p.name] = seenEntry{kind: p.kind}
	return nil
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
	s.umask = fileUmask(x.pool.umask, s.staging)
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

// writeFile creates the regular file dst (its parent exists) for the entry
// hdr, with permission bits mode. A file of up to maxPooledFile bytes is read
// into a buffer and handed to the writers; a larger one is streamed to disk
// here, with the 1 MiB copy buffer. u is the umask of its staging area.
func (x *extraction) writeFile(hdr *tar.Header, dst string, content io.Reader, mode fs.FileMode, u umask) error {
	if hdr.Size <= maxPooledFile {
		data, class, err := x.pool.buffer(hdr.Size)
		if err != nil {
			return err
		}
		job := fileJob{name: hdr.Name, path: dst, mode: mode, mtime: hdr.ModTime, data: data, class: class, umask: u}
		if _, err := io.ReadFull(content, data); err != nil {
			x.pool.release(job)
			return x.streamError("read content", err)
		}
		return x.pool.submit(job)
	}
	f, err := createFile(dst, mode)
	if err != nil {
		return err
	}
	if _, err := x.copyContent(f, content); err != nil {
		f.abandon()
		return err
	}
	return f.finish(hdr.ModTime, u)
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
