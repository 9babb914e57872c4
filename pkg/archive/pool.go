package archive

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// defaultWriters is the number of goroutines writing small files. File
	// creation is syscall and disk bound, not CPU bound, so more than the
	// cores helps. On a busy 2-core machine (BenchmarkExtract, tmpfs) 4, 8
	// and 16 were all 20-40% faster than one goroutine and within the noise
	// of each other: 8 is the middle.
	defaultWriters = 8
	// defaultInFlight bounds the bytes of file contents read but not yet
	// written, whatever the archive holds.
	defaultInFlight = 32 << 20
	// maxPooledFile is the largest file handed to the writers; a larger one
	// is streamed to disk by the reader itself with its 1 MiB buffer.
	maxPooledFile = 1 << 20
	// Content buffers come in powers of two, from 1<<minBufShift (4 KiB) to
	// maxPooledFile (1<<20): numBufClass classes, each with its free list
	// (see sizedBuffers).
	minBufShift = 12
	numBufClass = 20 - minBufShift + 1
)

// sizedBuffers recycles the buffers of small files' contents, in powers of
// two from 4 KiB to 1 MiB. A restore writes hundreds of megabytes through
// them: recycled, they stay a few megabytes of memory that
// is already mapped, where fresh ones would be garbage the heap grows into, a
// page fault per 4 KiB (dearer than the copy on a virtual machine) and
// collections. It keeps up to keep bytes of free buffers: a sync.Pool would
// be emptied by every collection, which a hook runs often (GOGC=25). The zero
// value keeps none.
type sizedBuffers struct {
	keep int64 // bytes of free buffers kept at most

	mu   sync.Mutex
	free [numBufClass][][]byte
	kept int64 // bytes in free
}

// get returns a buffer of size bytes (1 <= size <= maxPooledFile) and its
// class, for put.
func (s *sizedBuffers) get(size int64) ([]byte, int) {
	class := bufClass(size)
	s.mu.Lock()
	if n := len(s.free[class]); n > 0 {
		b := s.free[class][n-1]
		s.free[class] = s.free[class][:n-1]
		s.kept -= classSize(class)
		s.mu.Unlock()
		return b[:size], class
	}
	s.mu.Unlock()
	return make([]byte, size, classSize(class)), class
}

// put gives back a buffer get returned with class: it is kept for a later
// get if there is room, and left to the collector otherwise. A class below 0
// (no buffer: an empty file) is nothing to give back.
func (s *sizedBuffers) put(b []byte, class int) {
	if class < 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kept+classSize(class) <= s.keep {
		s.free[class] = append(s.free[class], b[:0])
		s.kept += classSize(class)
	}
}

// classSize is the capacity of the buffers of class.
func classSize(class int) int64 { return int64(1) << (minBufShift + class) }

// fileJob is one small file for the writers: its whole content is in data.
type fileJob struct {
	name  string // entry name, for errors
	path  string // in the staging directory; its parent exists
	mode  fs.FileMode
	mtime time.Time
	data  []byte // len is the file's size; nil for an empty file
	class int    // data's buffer class, -1 for none
	umask umask  // what shapes the new file's mode (see fileUmask)
}

// writerPool writes small files in parallel while the reader goes on with
// the archive. The reader hands over files whose parent directories it has
// created (submit); the writers create them with their final mode, content
// and mtime. The contents waiting or being written hold at most budget
// bytes of buffers: submit blocks until enough are released. The first
// failure makes every later job a no-op and is returned by err and wait;
// wait returns only when every writer goroutine has ended.
type writerPool struct {
	ctx    context.Context
	jobs   chan fileJob
	wg     sync.WaitGroup
	umask  umask
	before func(path string) error // test hook: fails a write; nil in production

	bufs sizedBuffers

	mu       sync.Mutex
	released *sync.Cond // signalled when budget is released or the pool fails
	inFlight int64
	budget   int64
	closed   bool

	failed atomic.Pointer[error]
}

// startWriterPool starts workers writer goroutines. They stop when ctx is
// cancelled (their jobs are then dropped: the caller sees ctx.Err()) or
// after wait.
func startWriterPool(ctx context.Context, workers int, budget int64, before func(string) error) *writerPool {
	p := &writerPool{
		ctx:    ctx,
		jobs:   make(chan fileJob, 4*workers),
		umask:  readUmask(),
		before: before,
		budget: budget,
		bufs:   sizedBuffers{keep: budget},
	}
	p.released = sync.NewCond(&p.mu)
	p.wg.Add(workers)
	for range workers {
		go p.work()
	}
	return p
}

// buffer returns a buffer of size bytes for a file's content, waiting until
// the budget allows it. It fails if the pool has failed.
func (p *writerPool) buffer(size int64) ([]byte, int, error) {
	if size == 0 {
		return nil, -1, p.err()
	}
	cost := classSize(bufClass(size))
	p.mu.Lock()
	// A buffer larger than the whole budget (only with a test's tiny
	// budget) waits until nothing else is in flight.
	for p.inFlight > 0 && p.inFlight+cost > p.budget && p.err() == nil {
		p.released.Wait()
	}
	if err := p.err(); err != nil {
		p.mu.Unlock()
		return nil, -1, err
	}
	p.inFlight += cost
	p.mu.Unlock()
	b, class := p.bufs.get(size)
	return b, class, nil
}

// release gives back a job's buffer.
func (p *writerPool) release(j fileJob) {
	if j.class < 0 {
		return
	}
	p.bufs.put(j.data, j.class)
	p.mu.Lock()
	p.inFlight -= int64(cap(j.data))
	p.mu.Unlock()
	p.released.Broadcast()
}

// bufClass returns the class of the smallest buffer that holds size bytes
// (1 <= size <= maxPooledFile).
func bufClass(size int64) int {
	shift := bits.Len64(uint64(size - 1))
	if shift < minBufShift {
		return 0
	}
	return shift - minBufShift
}

// submit queues a job. Its data came from buffer; the pool releases it. It
// returns the pool's failure, if any, instead of queueing.
func (p *writerPool) submit(j fileJob) error {
	if err := p.err(); err != nil {
		p.release(j)
		return err
	}
	p.jobs <- j // the writers drain the queue until wait, whatever happens
	return nil
}

// work writes jobs until the queue is closed. After a failure or a
// cancellation, it only releases their buffers.
func (p *writerPool) work() {
	defer p.wg.Done()
	for j := range p.jobs {
		if p.err() == nil && p.ctx.Err() == nil {
			if err := p.write(j); err != nil {
				p.fail(fmt.Errorf("extract %q: %w", j.name, err))
			}
		}
		p.release(j)
	}
}

// write creates the job's file with its content, mode and mtime.
func (p *writerPool) write(j fileJob) error {
	if p.before != nil {
		if err := p.before(j.path); err != nil {
			return err
		}
	}
	f, err := createFile(j.path, j.mode)
	if err != nil {
		return err
	}
	if len(j.data) > 0 {
		if _, err := f.Write(j.data); err != nil {
			f.abandon()
			return fmt.Errorf("write %s: %w", j.path, err)
		}
	}
	if err := f.finish(j.mtime, j.umask); err != nil {
		return fmt.Errorf("%s: %w", j.path, err)
	}
	return nil
}

// fail records err if it is the first failure, and wakes a reader waiting
// for budget.
func (p *writerPool) fail(err error) {
	if p.failed.CompareAndSwap(nil, &err) {
		p.mu.Lock()
		p.released.Broadcast() // under mu: a waiter cannot miss it
		p.mu.Unlock()
	}
}

// err returns the first failure of a writer, or nil.
func (p *writerPool) err() error {
	if e := p.failed.Load(); e != nil {
		return *e
	}
	return nil
}

// wait closes the queue, waits for every writer to end, and returns the
// first failure. Only the first call waits; later ones return the failure.
func (p *writerPool) wait() error {
	p.mu.Lock()
	closed := p.closed
	p.closed = true
	p.mu.Unlock()
	if !closed {
		close(p.jobs)
		p.wg.Wait()
	}
	return p.err()
}

// abort makes the writers drop what is queued, and waits for them to end.
func (p *writerPool) abort() {
	p.fail(errPoolAborted)
	_ = p.wait()
}

// errPoolAborted is the pool's failure after abort: the caller has an error
// of its own to report.
var errPoolAborted = errors.New("extract: writers stopped")
