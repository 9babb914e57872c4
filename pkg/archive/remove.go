package archive

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
)

// removeWorkers is the number of goroutines removing a tree: unlinking is
// syscall and disk bound, and entries of different directories are removed
// in parallel.
const removeWorkers = 8

// removeTree removes path and everything below it, like os.RemoveAll, but in
// parallel (removeParallel) and also when the tree holds read-only
// directories (Go's module cache is 0o555). If the parallel removal leaves
// anything, every directory left is made u+rwx and os.RemoveAll retries.
func removeTree(path string) error {
	if err := removeParallel(path, removeWorkers); err == nil {
		return nil
	}
	makeDirsWritable(path)
	if err := os.RemoveAll(path); err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// rmDir is a directory being removed: it is removed itself once its own
// listing is done and every subdirectory is gone.
type rmDir struct {
	path string
	id   fileID // what the parent's listing found at path: only that is listed
	// refused: path was not that directory any more, so it is not removed
	// either (rmdir could reach an empty directory elsewhere).
	refused bool
	parent  *rmDir
	// pending counts what must end before the directory can go: its own
	// listing (1) and each subdirectory found.
	pending atomic.Int64
}

// remover removes one tree with a fixed set of goroutines. A goroutine takes
// a directory from the stack, unlinks its non-directory entries and pushes
// its subdirectories; the last one to finish in a directory removes it and
// then finishes its parent, so directories go bottom-up. Symlinks are
// unlinked, never followed: a directory is listed only if it is still the
// one its parent's listing found (a component replaced by a symlink since
// is refused), and its entries are unlinked relative to its descriptor. A directory without write or search permission
// is made u+rwx (it is being removed anyway). Errors do not stop the others:
// the first is reported once everything that could go has gone.
type remover struct {
	// beforeList, if not nil, is called before a directory is opened to be
	// listed (tests change the tree there).
	beforeList func(path string)

	mu    sync.Mutex
	ready *sync.Cond
	stack []*rmDir
	done  bool // the root is gone, or failed to go
	err   error
}

// removeParallel removes path (not followed if it is a symlink) and
// everything below it with workers goroutines. A missing path is not an
// error.
func removeParallel(path string, workers int) error {
	return (&remover{}).run(path, workers)
}

// run is removeParallel.
func (r *remover) run(path string, workers int) error {
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !info.IsDir() {
		return os.Remove(path)
	}
	r.ready = sync.NewCond(&r.mu)
	root := &rmDir{path: path, id: idOfInfo(info)}
	root.pending.Store(1) // its own listing
	r.stack = append(r.stack, root)
	var wg sync.WaitGroup
	wg.Add(workers)
	for range workers {
		go func() {
			defer wg.Done()
			for d := r.next(); d != nil; d = r.next() {
				r.list(d)
				r.finish(d)
			}
		}()
	}
	wg.Wait()
	return r.err
}

// next returns a directory to list, waiting for one; nil once the whole
// tree is done.
func (r *remover) next() *rmDir {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.stack) == 0 && !r.done {
		r.ready.Wait()
	}
	if r.done {
		return nil
	}
	d := r.stack[len(r.stack)-1]
	r.stack = r.stack[:len(r.stack)-1]
	return d
}

func (r *remover) push(d *rmDir) {
	r.mu.Lock()
	r.stack = append(r.stack, d)
	r.mu.Unlock()
	r.ready.Signal()
}

func (r *remover) fail(err error) {
	r.mu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.mu.Unlock()
}

// list unlinks the entries of d that are not directories and queues those
// that are.
func (r *remover) list(d *rmDir) {
	if r.beforeList != nil {
		r.beforeList(d.path)
	}
	f, err := openListDir(d.path, d.id)
	if errors.Is(err, fs.ErrPermission) && os.Chmod(d.path, 0o700) == nil {
		f, err = openListDir(d.path, d.id)
	}
	if err != nil {
		d.refused = !errors.Is(err, fs.ErrPermission)
		r.fail(err)
		return
	}
	defer f.Close()
	chmodded := false
	for {
		entries, err := f.ReadDir(1024) // bounded memory for huge directories
		for _, e := range entries {
			if e.IsDir() {
				id, isDir, err := subdirID(f, e.Name())
				switch {
				case errors.Is(err, fs.ErrNotExist):
					continue
				case err != nil:
					r.fail(err)
					continue
				case isDir:
					d.pending.Add(1)
					sub := &rmDir{path: filepath.Join(d.path, e.Name()), id: id, parent: d}
					sub.pending.Store(1) // its own listing
					r.push(sub)
					continue
				}
			}
			uerr := unlinkIn(f, e.Name())
			if errors.Is(uerr, fs.ErrPermission) && !chmodded {
				chmodded = true
				if os.Chmod(d.path, 0o700) == nil {
					uerr = unlinkIn(f, e.Name())
				}
			}
			if uerr != nil && !errors.Is(uerr, fs.ErrNotExist) {
				r.fail(uerr)
			}
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			r.fail(fmt.Errorf("read directory %s: %w", d.path, err))
			return
		}
	}
}

// finish records that one thing d waited for has ended; when nothing is
// left, d is removed and its parent is finished in turn.
func (r *remover) finish(d *rmDir) {
	for ; d != nil; d = d.parent {
		if d.pending.Add(-1) > 0 {
			return
		}
		if d.refused {
			continue
		}
		err := os.Remove(d.path)
		if errors.Is(err, fs.ErrPermission) && d.parent != nil && os.Chmod(d.parent.path, 0o700) == nil {
			err = os.Remove(d.path)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			r.fail(err)
		}
	}
	r.mu.Lock()
	r.done = true
	r.mu.Unlock()
	r.ready.Broadcast()
}
