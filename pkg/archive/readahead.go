package archive

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sync"
	"syscall"
)

// Read-ahead on save. Opening many small files one at a time leaves the tar
// writer waiting on one system call after another, and on a cold page cache
// on one disk read after another. So the walk of a directory source runs
// ahead of the tar writer in its own goroutine, and a few workers open the
// regular files it finds, describe what they opened (fstat) and have the
// kernel start reading the small ones (posix_fadvise WILLNEED, Linux), while
// the writer is still storing earlier entries. The writer takes the entries
// in walk order and reads each file's content itself, straight into the
// compressor's buffer (tarWriter), so the archive is byte for byte what a
// serial walk writes.
const (
	// readAheadWorkers open files concurrently.
	readAheadWorkers = 4
	// readAheadEntries bounds the entries the walk may be ahead of the
	// writer.
	readAheadEntries = 512
	// readAheadFiles bounds the files opened ahead and not yet stored (see
	// openAheadLimit): enough to keep as many disk reads in flight on a cold
	// page cache.
	readAheadFiles = 64
	// readAheadMaxFile is the largest file whose reading the workers start;
	// the kernel reads a larger one ahead as the writer reads it.
	readAheadMaxFile = 1 << 20
)

// walkItem is one entry of the walk, in walk order: an error that ends the
// walk, a warning, or a path to store (with, for a regular file, what a
// worker opened).
type walkItem struct {
	err        error
	warn       string // the entry name was met but not stored
	leftover   bool   // the entry name is a restore's leftover, not stored
	name, path string
	d          fs.DirEntry
	read       *fileRead // regular files, when read-ahead is on
}

// fileRead is what a read-ahead worker opened for one regular file. done is
// closed when the other fields are set. Whoever takes it calls finish.
type fileRead struct {
	slots   chan struct{} // holds one token for this file until finish
	done    chan struct{}
	skipped bool        // not opened (the walk was stopped, no descriptor left): the writer opens the file
	err     error       // from opening or describing it
	f       *inFile     // the file, open
	info    fs.FileInfo // of f
}

// finish closes what the worker opened, once the file is stored or will not
// be, and gives back its slot.
func (r *fileRead) finish() {
	if r.f != nil {
		_ = r.f.Close()
	}
	<-r.slots
}

// release waits for the worker and finishes an item that will not be stored.
func (it walkItem) release() {
	if it.read == nil {
		return
	}
	<-it.read.done
	it.read.finish()
}

// walkAhead walks root in filepath.WalkDir order and returns its entries on
// a channel, regular files being read by workers meanwhile. stop must be
// called once the caller no longer reads the channel: it stops the walk and
// the workers and returns when none of their goroutines is left.
func (aw *archiveWriter) walkAhead(top, root string) (items <-chan walkItem, stop func()) {
	ctx, cancel := context.WithCancel(aw.ctx)
	out := make(chan walkItem, readAheadEntries)
	reads := make(chan walkItem, readAheadEntries)
	// A file takes its slot in walk order, before any worker may open it, and
	// gives it back once stored: the file the writer waits for always has one.
	slots := make(chan struct{}, openAheadLimit())
	var wg sync.WaitGroup
	for range readAheadWorkers {
		wg.Go(func() {
			for it := range reads {
				openAhead(ctx, it.path, it.read)
			}
		})
	}
	wg.Go(func() {
		defer close(out)
		defer close(reads)
		emit := func(it walkItem) bool {
			if it.read != nil {
				select {
				case slots <- struct{}{}:
				case <-ctx.Done():
					return false
				}
				it.read.slots = slots
				reads <- it // workers drain it whatever the writer does
			}
			select {
			case out <- it:
				return true
			case <-ctx.Done():
				it.release()
				return false
			}
		}
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if p != root && errors.Is(err, fs.ErrNotExist) {
					name, _ := storedName(top, root, p)
					return keepOn(emit(walkItem{name: name, warn: fmt.Sprintf("%s vanished while being archived; skipping it", p)}))
				}
				return fmt.Errorf("archive %s: %w", p, err)
			}
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("archive %s: %w", p, err)
			}
			name, err := storedName(top, root, p)
			if err != nil {
				return fmt.Errorf("archive %s: %w", p, err)
			}
			// A restore into a mount point stages inside it: a helper left there by a
			// killed restore is not part of the cache.
			if filepath.Dir(p) == root && isLeftover(d.Name(), nameStem(filepath.Base(root))) {
				if !emit(walkItem{name: name, leftover: true}) {
					return errStopWalk
				}
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			it := walkItem{name: name, path: p, d: d}
			if d.Type().IsRegular() && aw.readAhead {
				it.read = &fileRead{done: make(chan struct{})}
			}
			return keepOn(emit(it))
		})
		if err != nil && !errors.Is(err, errStopWalk) {
			emit(walkItem{err: err})
		}
	})
	return out, func() {
		cancel()
		for it := range out { // unblock the walk
			it.release()
		}
		wg.Wait()
	}
}

// storedName is the name under which the path p, met by the walk of root, is
// stored: top, or top/<p relative to root>. Names are stored as the bytes the
// system gave (not necessarily UTF-8); the tar writer puts what does not fit
// the header in PAX records, which keep bytes as they are.
func storedName(top, root, p string) (string, error) {
	rel, err := filepath.Rel(root, p)
	if err != nil || rel == "." {
		return top, err
	}
	return top + "/" + filepath.ToSlash(rel), nil
}

// errStopWalk ends a walk whose consumer has gone.
var errStopWalk = errors.New("walk stopped")

func keepOn(ok bool) error {
	if !ok {
		return errStopWalk
	}
	return nil
}

// openAhead opens p and describes it into r, and has the kernel start
// reading a small regular file. It always closes r.done.
func openAhead(ctx context.Context, p string, r *fileRead) {
	defer close(r.done)
	if ctx.Err() != nil {
		r.skipped = true
		return
	}
	f, err := openFile(p)
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
		r.skipped = true // out of descriptors: the writer opens it once earlier ones are closed
		return
	}
	if err != nil {
		r.err = err
		return
	}
	info, err := f.Stat()
	if err != nil {
		_ = f.Close()
		r.err = err
		return
	}
	if size := info.Size(); info.Mode().IsRegular() && size > 0 && size <= readAheadMaxFile {
		willNeed(f, size)
	}
	r.f, r.info = f, info
}
