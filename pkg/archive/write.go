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
	"strconv"
	"syscall"
)

// Write walks every source path in order and writes one tar stream, ending
// with the checksum trailer and compressed with c at level (0 = the
// compressor's default), to w. Source i is stored under the top-level entry
// name strconv.Itoa(i): a directory source becomes entry "i/" plus "i/<rel>"
// for its contents; a regular-file source becomes a single regular entry "i".
// Names are kept byte for byte. A source that does not exist is skipped with a
// warning (the entry is simply absent). Returns the number of uncompressed
// content bytes and entries written. level is ignored for None.
//
// Symlinks are stored, never followed: a source that is a symlink is stored as
// that symlink, even spelled "link/". Every source is made absolute and clean
// (filepath.Abs) first, as Extract does with its targets, so that a save and a
// restore of one path agree on what stands there and on the leftovers inside
// it. Hard links are detected within one source only, because Extract only
// accepts links inside one target. Device nodes, FIFOs and sockets are skipped
// with a warning, and so are files that vanish during the walk. A file that
// shrinks while being read is an error; one that grows is stored with the size
// it had when its header was written.
//
// On error, what was written to w is not a valid archive and must be
// discarded.
func Write(ctx context.Context, w io.Writer, sources []string, c Compression, level int, log Logger) (Stats, error) {
	return write(ctx, w, sources, c, level, log, nil, true)
}

// An Observer is told what Write stores, as it stores it, in the archive's
// order: each directory before its entries, the entries of a directory in
// name order. A save uses it to describe the tree it read without walking it
// again (pkg/cache, warm restores).
type Observer interface {
	// Stored: the entry name (without a directory's trailing slash) was
	// stored from info, the lstat of the path or the fstat of the file read,
	// taken before its content was read (a directory's may come after the
	// walk listed it); link is a symlink's target.
	Stored(name string, info fs.FileInfo, link string)
	// Missing: the source stored as name does not exist.
	Missing(name string)
	// Passed: the walk met name but did not store it (gone, not a type that is
	// cached, a restore's leftover).
	Passed(name string)
}

// WriteObserved is Write, telling obs about every entry.
func WriteObserved(ctx context.Context, w io.Writer, sources []string, c Compression, level int, log Logger, obs Observer) (Stats, error) {
	return write(ctx, w, sources, c, level, log, obs, true)
}

// noObserver is the Observer of a plain Write.
type noObserver struct{}

func (noObserver) Stored(string, fs.FileInfo, string) {}
func (noObserver) Missing(string)                     {}
func (noObserver) Passed(string)                      {}

// write is WriteObserved (obs may be nil) with read-ahead as a parameter
// (false: the tar writer opens every file itself), so tests can check that it
// changes nothing.
func write(ctx context.Context, w io.Writer, sources []string, c Compression, level int, log Logger, obs Observer, readAhead bool) (Stats, error) {
	if obs == nil {
		obs = noObserver{}
	}
	if err := c.check(); err != nil {
		return Stats{}, err
	}
	cw, err := newCompressor(w, c, level)
	if err != nil {
		return Stats{}, err
	}
	sum := newChecksumWriter(cw)
	aw := &archiveWriter{
		ctx:       ctx,
		tw:        newTarWriter(sum),
		warn:      warnOrDiscard(log),
		obs:       obs,
		readAhead: readAhead,
	}
	for i, src := range sources {
		p, err := sourcePath(src)
		if err == nil {
			err = aw.addSource(strconv.Itoa(i), p)
		}
		if err != nil {
			abandon(cw)
			return aw.stats, err
		}
	}
	// Pad the last entry, so that the checksum covers every byte before the
	// trailer; write the trailer, then close the tar writer (end-of-archive
	// marker) and the compressor (flushes and writes its own checksum).
	if err := finishTar(aw.tw, sum); err != nil {
		abandon(cw)
		return aw.stats, err
	}
	if err := cw.Close(); err != nil {
		return aw.stats, fmt.Errorf("finish %s stream: %w", c, err)
	}
	return aw.stats, nil
}

// sourcePath is src as Extract names a target: absolute and clean (filepath.Abs), so that a
// save and a restore of one path agree on what stands there and on the leftovers inside it.
// An empty path stays empty: it names nothing, and is skipped as missing.
func sourcePath(src string) (string, error) {
	if src == "" {
		return "", nil
	}
	p, err := filepath.Abs(src)
	if err != nil {
		return "", fmt.Errorf("archive %s: %w", src, err)
	}
	return p, nil
}

// archiveWriter holds the state of one Write call.
type archiveWriter struct {
	ctx       context.Context
	tw        *tarWriter
	warn      warnFunc
	obs       Observer
	readAhead bool // workers open files ahead of the writer (walkAhead)
	// links maps the inode of every file with several names, seen in the
	// current source, to the entry name it was first stored under.
	links map[fileID]string
	stats Stats
}

// addSource stores one source path under the top-level name top.
func (aw *archiveWriter) addSource(top, src string) error {
	if err := aw.ctx.Err(); err != nil {
		return fmt.Errorf("archive %s: %w", src, err)
	}
	info, err := os.Lstat(src)
	if errors.Is(err, fs.ErrNotExist) {
		aw.warn("cache path %s does not exist; skipping it", src)
		aw.obs.Missing(top)
		return nil
	}
	if err != nil {
		return fmt.Errorf("archive %s: %w", src, err)
	}
	// Hard links are only recorded within one source: Extract refuses a link
	// from one target into another.
	aw.links = make(map[fileID]string)

	switch mode := info.Mode(); {
	case mode.IsDir():
		return aw.addTree(top, src)
	case mode.IsRegular():
		return aw.addFile(top, src)
	case mode&fs.ModeSymlink != 0:
		aw.warn("cache path %s is a symlink; storing the link itself, not what it points to", src)
		return aw.addSymlink(top, src, info)
	default:
		aw.warn("cache path %s is not a regular file, directory or symlink (%s); skipping it", src, mode.Type())
		aw.obs.Passed(top)
		return nil
	}
}

// addTree stores the directory root as "top/" and everything below it as
// "top/<rel>", in filepath.WalkDir order, which never follows symlinks. The
// walk and the reading of small files run ahead (see walkAhead).
func (aw *archiveWriter) addTree(top, root string) error {
	items, stop := aw.walkAhead(top, root)
	defer stop()
	for it := range items {
		switch {
		case it.err != nil:
			return it.err
		case it.warn != "":
			aw.warn("%s", it.warn)
			aw.obs.Passed(it.name)
			continue
		case it.leftover:
			aw.obs.Passed(it.name)
			continue
		}
		if err := aw.ctx.Err(); err != nil {
			it.release()
			return fmt.Errorf("archive %s: %w", it.path, err)
		}
		if it.read != nil {
			if err := aw.addRead(it.name, it.path, it.read); err != nil {
				return err
			}
			continue
		}
		if err := aw.addEntry(it.name, it.path, it.d); err != nil {
			return err
		}
	}
	return nil
}

// addRead stores the regular file p that a read-ahead worker opened, or
// opens it itself if the worker left it.
func (aw *archiveWriter) addRead(name, p string, r *fileRead) error {
	<-r.done
	defer r.finish()
	switch {
	case r.skipped:
		return aw.addFile(name, p)
	case r.err != nil:
		return aw.openFailed(name, p, r.err)
	}
	return aw.addOpened(name, p, r.f, r.info)
}

// openFailed says what the failure err to open and describe the regular file
// p means for the save: a file gone since the walk, or replaced by a symlink
// (which O_NOFOLLOW refuses to open), is skipped with a warning, as one
// replaced by anything else is; any other failure fails it.
func (aw *archiveWriter) openFailed(name, p string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		aw.warn("%s vanished while being archived; skipping it", p)
		aw.obs.Passed(name)
		return nil
	case errors.Is(err, syscall.ELOOP):
		aw.warn("%s is no longer a regular file; skipping it", p)
		aw.obs.Passed(name)
		return nil
	}
	return fmt.Errorf("archive %s: %w", p, err)
}

// addEntry stores one path met during the walk.
func (aw *archiveWriter) addEntry(name, p string, d fs.DirEntry) error {
	typ := d.Type()
	if typ.IsRegular() {
		return aw.addFile(name, p)
	}
	if typ&(fs.ModeDir|fs.ModeSymlink) == 0 {
		aw.warn("skipping %s: %s files are not cached", p, typ)
		aw.obs.Passed(name)
		return nil
	}
	info, err := d.Info() // Lstat
	if errors.Is(err, fs.ErrNotExist) {
		aw.warn("%s vanished while being archived; skipping it", p)
		aw.obs.Passed(name)
		return nil
	}
	if err != nil {
		return fmt.Errorf("archive %s: %w", p, err)
	}
	if typ.IsDir() {
		aw.obs.Stored(name, info, "")
		return aw.writeHeader(p, newHeader(name+"/", tar.TypeDir, info))
	}
	return aw.addSymlink(name, p, info)
}

// addSymlink stores the symlink p with its target exactly as read.
func (aw *archiveWriter) addSymlink(name, p string, info fs.FileInfo) error {
	target, err := os.Readlink(p)
	if err != nil {
		return fmt.Errorf("archive %s: %w", p, err)
	}
	aw.obs.Stored(name, info, target)
	hdr := newHeader(name, tar.TypeSymlink, info)
	hdr.Linkname = target
	return aw.writeHeader(p, hdr)
}

// addFile stores the regular file p, or a hard link entry if another name of
// the same inode was already stored in this source.
func (aw *archiveWriter) addFile(name, p string) error {
	f, err := openFile(p)
	if err != nil {
		return aw.openFailed(name, p, err)
	}
	defer f.Close()

	// Describe what was opened, not what the walk saw earlier.
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("archive %s: %w", p, err)
	}
	return aw.addOpened(name, p, f, info)
}

// addOpened stores p, open as f and described by info, if it is still a
// regular file.
func (aw *archiveWriter) addOpened(name, p string, f io.Reader, info fs.FileInfo) error {
	if !info.Mode().IsRegular() {
		aw.warn("%s is no longer a regular file; skipping it", p)
		aw.obs.Passed(name)
		return nil
	}
	return aw.storeFile(name, p, info, func() (int64, error) {
		return aw.tw.readFrom(ctxReader{aw.ctx, f})
	})
}

// storeFile stores the regular file p, described by info (of the opened
// file), as a hard link entry if another name of its inode was stored in this
// source, else as a file whose content the function writes.
func (aw *archiveWriter) storeFile(name, p string, info fs.FileInfo, content func() (int64, error)) error {
	aw.obs.Stored(name, info, "")
	id, multiLinked := hardLinkID(info)
	if multiLinked {
		if first, ok := aw.links[id]; ok {
			hdr := newHeader(name, tar.TypeLink, info)
			hdr.Linkname = first
			return aw.writeHeader(p, hdr)
		}
	}

	hdr := newHeader(name, tar.TypeReg, info)
	hdr.Size = info.Size()
	if err := aw.writeHeader(p, hdr); err != nil {
		return err
	}
	n, err := content()
	aw.stats.Bytes += n
	if err != nil {
		return fmt.Errorf("archive %s: %w", p, err)
	}
	if multiLinked {
		aw.links[id] = name
	}
	return nil
}

// writeHeader writes hdr for the path p and counts the entry.
func (aw *archiveWriter) writeHeader(p string, hdr *tar.Header) error {
	if err := aw.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("archive %s: write header %s: %w", p, hdr.Name, err)
	}
	aw.stats.Entries++
	return nil
}

// newHeader returns a PAX header with the metadata this package records:
// permission bits and the modification time (PAX keeps the nanoseconds).
// Owners are deliberately left out (uid/gid 0, no names).
func newHeader(name string, typ byte, info fs.FileInfo) *tar.Header {
	return &tar.Header{
		Typeflag: typ,
		Name:     name,
		Mode:     int64(info.Mode().Perm()),
		ModTime:  info.ModTime(),
		Format:   tar.FormatPAX,
	}
}
