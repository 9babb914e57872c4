package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// Read-ahead on save. Opening and reading many small files one at a time
// leaves the tar writer waiting on one system call after another. So the
// walk of a directory source runs ahead of the tar writer in its own
// goroutine, and a few workers open and read the small regular files it
// finds while the writer is still storing earlier entries. The writer takes
// the entries in walk order, so the archive is byte for byte what a serial
// walk writes.
const (
	// readAheadWorkers open and read files concurrently.
	readAheadWorkers = 4
	// readAheadEntries bounds the entries the walk may be ahead of the writer.
	readAheadEntries = 512
	// readAheadMaxFile is the largest file read ahead whole; larger ones are
	// streamed by the writer, as a single-file source is.
	readAheadMaxFile = 1 << 20
	// readAheadBudget bounds the bytes read ahead and not yet written. A file
	// that does not fit is left to the writer, so the budget never waits.
	readAheadBudget = 16 << 20
)

// walkItem is one entry of the walk, in walk order: an error that ends the
// walk, a warning, or a path to store (with, for a regular file, what a
// worker read of it).
type walkItem struct {
	err        error
	warn       string
	name, path string
	d          fs.DirEntry
	read       *fileRead // regular files only
}

// fileRead is what a read-ahead worker found for one regular file. done is
// closed when the other fields are set.
type fileRead struct {
	done    chan struct{}
	skipped bool        // not read ahead (large, over budget, or cancelled): the writer opens the file
	err     error       // from opening or reading it
	info    fs.FileInfo // of the opened file
	data    []byte      // its content, exactly info.Size() bytes, from aw.bufs
	class   int         // data's buffer class (sizedBuffers), -1 for none
}

// byteBudget is a count of bytes that may be taken without waiting, or not.
type byteBudget struct {
	mu   sync.Mutex
	left int64
}

func (b *byteBudget) tryTake(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n > b.left {
		return false
	}
	b.left -= n
	return true
}

func (b *byteBudget) give(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.left += n
}

// walkAhead walks root in filepath.WalkDir order and returns its entries on
// a channel, regular files being read by workers meanwhile. stop must be
// called once the caller no longer reads the channel: it stops the walk and
// the workers and returns when none of their goroutines is left.
func (aw *archiveWriter) walkAhead(top, root string) (items <-chan walkItem, stop func()) {
	ctx, cancel := context.WithCancel(aw.ctx)
	out := make(chan walkItem, readAheadEntries)
	reads := make(chan walkItem, readAheadEntries)
	var wg sync.WaitGroup
	for range readAheadWorkers {
		wg.Go(func() {
			for it := range reads {
				aw.readAhead(ctx, it.path, it.read)
			}
		})
	}
	wg.Go(func() {
		defer close(out)
		defer close(reads)
		emit := func(it walkItem) bool {
			if it.read != nil {
				reads <- it // workers drain it whatever the writer does
			}
			select {
			case out <- it:
				return true
			case <-ctx.Done():
				return false
			}
		}
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if p != root && errors.Is(err, fs.ErrNotExist) {
					return keepOn(emit(walkItem{warn: fmt.Sprintf("%s vanished while being archived; skipping it", p)}))
				}
				return fmt.Errorf("archive %s: %w", p, err)
			}
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("archive %s: %w", p, err)
			}
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return fmt.Errorf("archive %s: %w", p, err)
			}
			// A restore into a mount point stages inside it: a helper left there by a
			// killed restore is not part of the cache.
			if filepath.Dir(p) == root && isLeftover(d.Name(), nameStem(filepath.Base(root))) {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			// Names are stored as the bytes the system gave (not necessarily
			// UTF-8); the tar writer puts what does not fit the header in PAX
			// records, which keep bytes as they are.
			name := top
			if rel != "." {
				name = top + "/" + filepath.ToSlash(rel)
			}
			it := walkItem{name: name, path: p, d: d}
			if d.Type().IsRegular() {
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
		for range out { // unblock the walk
		}
		wg.Wait()
	}
}

// errStopWalk ends a walk whose consumer has gone.
var errStopWalk = errors.New("walk stopped")

func keepOn(ok bool) error {
	if !ok {
		return errStopWalk
	}
	return nil
}

// readAhead opens p and, if it is a regular file small enough for the
// budget, reads it whole into r. It always closes r.done.
func (aw *archiveWriter) readAhead(ctx context.Context, p string, r *fileRead) {
	defer close(r.done)
	if ctx.Err() != nil {
		r.skipped = true
		return
	}
	f, err := os.OpenFile(p, os.O_RDONLY|openReadFlags, 0)
	if err != nil {
		r.err = err
		return
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		r.err = err
		return
	}
	size := info.Size()
	if !info.Mode().IsRegular() || size > readAheadMaxFile || !aw.budget.tryTake(size) {
		r.skipped = true // the writer opens it again, and sees for itself
		return
	}
	var data []byte
	class := -1
	if size > 0 {
		data, class = aw.bufs.get(size)
	}
	n, err := io.ReadFull(ctxReader{ctx, f}, data)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		err = fmt.Errorf("file shrank while being read: got %d of %d bytes", n, size)
	case err != nil && ctx.Err() != nil:
		err = ctx.Err()
	}
	if err != nil {
		aw.budget.give(size)
		aw.bufs.put(data, class)
		r.err = err
		return
	}
	r.info, r.data, r.class = info, data, class
}
