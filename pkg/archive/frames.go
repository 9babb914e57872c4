package archive

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// zstdBlockSize is the tar bytes compressed into each zstd frame (or into
// several, where runs of the block are stored raw). Each frame
// starts with an empty window, so smaller blocks compress worse: on the
// node_modules corpus (530 MB) 4 MiB blocks made the archive 6.7% larger than
// one stream, 8 MiB 3.7%, 16 MiB 1.9%, at the same CPU time. 8 MiB is the
// window of zstd's default level, and keeps memory modest (see
// maxZstdWorkers).
const zstdBlockSize = 8 << 20

// maxZstdWorkers bounds the frames compressed at once, hence memory: at most
// workers+2 blocks are held, each with its compressed copy (64 MiB on two
// cores, 128 MiB from six), whatever the number of cores. Six cores compress
// faster than any upload the store makes.
const maxZstdWorkers = 6

// errFramesAborted is what a frameWriter's Write returns once it was abandoned.
var errFramesAborted = errors.New("zstd stream abandoned")

// frameWriter compresses what is written to it as a sequence of independent
// zstd frames, one per blockSize bytes of input (the last one shorter), each
// with its content checksum; a block with runs that look random is written
// as several frames, those runs stored raw without a checksum (see rawRuns).
// Frames are compressed concurrently, by up to
// workers goroutines, and written to w in input order by one goroutine: the
// concatenation is a valid zstd stream, which every decoder reads as the
// input (what `zstd -T0` and pzstd do). At most workers+2 blocks are in
// memory (workers queued or being compressed, one being written, one being
// filled), each with its compressed copy.
type frameWriter struct {
	w         io.Writer
	enc       *zstd.Encoder
	blockSize int
	fill      []byte         // the block being filled; nil between blocks
	sent      bool           // a frame was submitted (an empty stream still gets one)
	frames    chan *frameJob // to the writing goroutine, in order; its capacity bounds the blocks in flight
	work      chan *frameJob // to the compressing goroutines, in the same order
	workers   sync.WaitGroup
	free      chan []byte   // recycled input buffers
	freeOut   chan []byte   // recycled output buffers
	done      chan struct{} // closed when the writing goroutine has returned
	closed    bool

	mu  sync.Mutex
	err error // the first failure: of w, or errFramesAborted
}

// frameJob is one block being compressed.
type frameJob struct {
	src, out []byte
	done     chan struct{} // closed once out holds the frame
}

// newFrameWriter returns a frameWriter at the given zstd level (0: the
// encoder's default) that cuts its input into blocks of blockSize bytes.
func newFrameWriter(w io.Writer, level, blockSize int) (*frameWriter, error) {
	workers := min(runtime.GOMAXPROCS(0), maxZstdWorkers)
	opts := []zstd.EOption{
		zstd.WithEncoderCRC(true),            // every compressed frame carries a checksum
		zstd.WithZeroFrames(true),            // an empty input still makes a valid frame
		zstd.WithEncoderConcurrency(workers), // EncodeAll calls at once
	}
	if level != 0 {
		opts = append(opts, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)))
	}
	enc, err := zstd.NewWriter(nil, opts...)
	if err != nil {
		return nil, fmt.Errorf("start zstd compressor: %w", err)
	}
	inFlight := workers
	f := &frameWriter{
		w:         w,
		enc:       enc,
		blockSize: blockSize,
		frames:    make(chan *frameJob, inFlight),
		work:      make(chan *frameJob, inFlight),
		free:      make(chan []byte, inFlight+2),
		freeOut:   make(chan []byte, inFlight+2),
		done:      make(chan struct{}),
	}
	// Long-lived workers take blocks oldest first, so the block the writing
	// goroutine waits for is never left behind newer ones.
	for range workers {
		f.workers.Go(func() {
			for job := range f.work {
				job.out = f.encode(job.src, job.out)
				close(job.done)
			}
		})
	}
	go f.writeFrames()
	return f, nil
}

// encode appends to dst the frames of one block: runs of it that look
// incompressible are stored raw, the rest is compressed. A block with no such
// run is one compressed frame.
func (f *frameWriter) encode(src, dst []byte) []byte {
	next := 0 // the start of what is not yet in dst
	for _, run := range rawRuns(src) {
		if run.start > next {
			dst = f.enc.EncodeAll(src[next:run.start], dst)
		}
		dst = appendRawFrame(dst, src[run.start:run.end])
		next = run.end
	}
	if next < len(src) || len(src) == 0 {
		dst = f.enc.EncodeAll(src[next:], dst)
	}
	return dst
}

// Write buffers p into blocks, handing each full block to a compressing
// goroutine. It blocks while the maximum of blocks are in flight.
func (f *frameWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		space, err := f.space()
		if err != nil {
			return written, err
		}
		k := copy(space, p)
		f.commit(k)
		p, written = p[k:], written+k
	}
	return written, nil
}

// space returns the unfilled rest of the block being filled, never empty,
// for the caller to fill in place (a file's content read straight into it)
// and commit. It blocks while the maximum of blocks are in flight.
func (f *frameWriter) space() ([]byte, error) {
	if f.closed {
		return nil, errors.New("write to a closed zstd stream")
	}
	if err := f.failure(); err != nil {
		return nil, err
	}
	if f.fill == nil {
		f.fill = f.buffer(f.free, f.blockSize)
	}
	return f.fill[len(f.fill):f.blockSize], nil
}

// commit appends to the stream the first n bytes of the last space.
func (f *frameWriter) commit(n int) {
	f.fill = f.fill[:len(f.fill)+n]
	if len(f.fill) == f.blockSize {
		f.submit()
	}
}

// Close compresses the last block, waits until every frame is written, and
// returns the first error writing them met.
func (f *frameWriter) Close() error {
	if f.closed {
		return f.failure()
	}
	if len(f.fill) > 0 || !f.sent {
		if f.fill == nil {
			f.fill = f.buffer(f.free, f.blockSize)
		}
		f.submit()
	}
	f.finish()
	return f.failure()
}

// abort abandons the stream: frames not yet written are dropped. It returns
// once no goroutine of f is left.
func (f *frameWriter) abort() {
	if f.closed {
		return
	}
	f.setFailure(errFramesAborted)
	f.finish()
}

func (f *frameWriter) finish() {
	f.closed = true
	close(f.work)
	close(f.frames)
	<-f.done
	f.workers.Wait()
	_ = f.enc.Close()
}

// submit hands the filled block to the workers. The send to frames comes
// first: its capacity bounds the blocks in flight.
func (f *frameWriter) submit() {
	job := &frameJob{src: f.fill, out: f.buffer(f.freeOut, f.blockSize+f.blockSize/64+64), done: make(chan struct{})}
	f.fill, f.sent = nil, true
	f.frames <- job
	f.work <- job
}

// writeFrames writes the frames to w in order until frames is closed. After
// a failure it goes on draining (the producer never blocks) but writes
// nothing.
func (f *frameWriter) writeFrames() {
	defer close(f.done)
	for job := range f.frames {
		<-job.done
		if f.failure() == nil {
			if _, err := f.w.Write(job.out); err != nil {
				f.setFailure(err)
			}
		}
		recycle(f.free, job.src)
		recycle(f.freeOut, job.out)
	}
}

// buffer returns an empty buffer of capacity at least size, recycled if one
// is free.
func (f *frameWriter) buffer(pool chan []byte, size int) []byte {
	select {
	case b := <-pool:
		if cap(b) >= size {
			return b[:0]
		}
	default:
	}
	return make([]byte, 0, size)
}

// recycle keeps b for a later block, unless enough are kept already.
func recycle(pool chan []byte, b []byte) {
	select {
	case pool <- b:
	default:
	}
}

func (f *frameWriter) failure() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (f *frameWriter) setFailure(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = err
	}
}

// Incompressible data. zstd finds no matches in random or already
// compressed data (a 1 GiB random file, a cache of .jar or .gz files) and
// stores its blocks raw, but only after a full search for matches: at level 3
// that costs as much CPU as compressing text. Runs of a block whose bytes
// look random are therefore stored raw without a search, in frames of their
// own. The test is the byte entropy of samples: a 128 KiB segment looks
// random when each of its samples does (randomSample bytes every
// sampleStride, so that a compressible run of sampleStride+randomSample-1
// bytes or more always holds a whole sample, at the cost of 1/16 of a pass
// over the data, and at most one sample of a compressible segment). What it
// cannot see costs space, never correctness: high-entropy data repeated
// within a block (the same .gz twice in 8 MiB), and shorter compressible
// runs between the samples (in the worst case, 8 KiB of random bytes and 8
// KiB of zeros in turn, in step with the samples, are stored at twice the
// size zstd would make). Only runs of rawRunMin or more are split off, as
// each frame starts with an empty window: a short random run (an image among
// sources) is compressed with its neighbours.
const (
	sampleStride = 16 << 10
	randomSample = 1 << 10
	// randomEntropy is the bits per byte from which a sample counts as
	// random. Over 1 KiB, uniform random bytes measure 7.75 to 7.87 (the
	// estimate is biased low), gzip, zstd and xz output 7.3 to 7.86; text
	// measures 2.9 to 5.8, machine code up to 6.3, a tar header (half a
	// sample of mostly zeros) about 5.
	randomEntropy = 7.0
	// rawBlockMax is the largest block of a zstd frame, and the segment the
	// test classifies.
	rawBlockMax = 128 << 10
	// rawRunMin is the shortest run stored raw.
	rawRunMin = 4 * rawBlockMax
)

// span is the half-open range [start, end) of a block.
type span struct{ start, end int }

// rawRuns returns, in order, the runs of src of rawRunMin bytes or more whose
// every segment looks random. Segments are rawBlockMax bytes from the start
// of src; a shorter tail is classified with the segment before it.
func rawRuns(src []byte) []span {
	var runs []span
	start := -1 // of the current run of random segments; -1: none
	closeRun := func(end int) {
		if start >= 0 && end-start >= rawRunMin {
			runs = append(runs, span{start, end})
		}
		start = -1
	}
	for off := 0; off < len(src); {
		end := off + rawBlockMax
		if len(src)-end < rawBlockMax {
			end = len(src)
		}
		if !looksRandom(src[off:end]) {
			closeRun(off)
		} else if start < 0 {
			start = off
		}
		off = end
	}
	closeRun(len(src))
	return runs
}

// looksRandom tells whether every sample of seg has the entropy of random
// bytes. The last sample is the last randomSample bytes.
func looksRandom(seg []byte) bool {
	if len(seg) < randomSample {
		return false
	}
	for off := 0; off < len(seg); off += sampleStride {
		sample := seg[min(off, len(seg)-randomSample):][:randomSample]
		if entropy(sample) < randomEntropy {
			return false
		}
	}
	return true
}

// entropy returns the Shannon entropy of a sample of randomSample bytes, in
// bits per byte: log2(n) - Σ c·log2(c) / n over the count c of each value.
func entropy(sample []byte) float64 {
	var hist [256]uint16
	for _, c := range sample {
		hist[c]++
	}
	sum := 0.0
	for _, c := range hist {
		sum += xlog2x[c]
	}
	return math.Log2(randomSample) - sum/randomSample
}

// xlog2x holds c·log2(c) for every count of a sample (0 for 0).
var xlog2x = func() (t [randomSample + 1]float64) {
	for c := 2; c <= randomSample; c++ {
		t[c] = float64(c) * math.Log2(float64(c))
	}
	return t
}()

// appendRawFrame appends to dst a zstd frame that stores src uncompressed
// (RFC 8878: a single-segment frame header with the content size, then raw
// blocks). src is part of one block, far under the 4 GiB the size field
// holds. The frame has no checksum of its own: the archive's trailer
// (checksum.go) covers every byte of the tar stream.
func appendRawFrame(dst, src []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, 0xFD2FB528) // magic number
	// Frame header descriptor: a 4-byte content size, single segment, no
	// checksum, no dictionary.
	dst = append(dst, 2<<6|1<<5)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(src)))
	for {
		n := min(len(src), rawBlockMax)
		header := uint32(n) << 3 // block type 0: raw
		if n == len(src) {
			header |= 1 // the last block
		}
		dst = append(dst, byte(header), byte(header>>8), byte(header>>16))
		dst = append(dst, src[:n]...)
		if src = src[n:]; len(src) == 0 {
			return dst
		}
	}
}
