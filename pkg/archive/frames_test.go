package archive

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// TestFrameWriter: the stream is exactly one independent frame per block (the
// last one shorter, an empty input one empty frame), in order, whatever the
// sizes of the writes, and it decodes to the input.
func TestFrameWriter(t *testing.T) {
	const block = 1000
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(true), zstd.WithZeroFrames(true))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	for _, tc := range []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"one byte", 1},
		{"one block", block},
		{"block plus one", block + 1},
		{"many blocks", 37*block + 7},
		{"many whole blocks", 40 * block},
	} {
		for _, chunk := range []int{1, 333, block, 5000} {
			in := testInput(tc.size, uint64(tc.size))
			var out bytes.Buffer
			fw, err := newFrameWriter(&out, 0, block)
			if err != nil {
				t.Fatal(err)
			}
			for rest := in; len(rest) > 0; {
				k := min(chunk, len(rest))
				if n, err := fw.Write(rest[:k]); n != k || err != nil {
					t.Fatalf("%s: Write = %d, %v", tc.name, n, err)
				}
				rest = rest[k:]
			}
			if err := fw.Close(); err != nil {
				t.Fatalf("%s: Close: %v", tc.name, err)
			}

			// The same frames as compressing each block alone.
			var want []byte
			for off := 0; off < len(in) || off == 0; off += block {
				want = enc.EncodeAll(in[off:min(off+block, len(in))], want)
			}
			if !bytes.Equal(out.Bytes(), want) {
				t.Errorf("%s, writes of %d: stream is not the concatenation of one frame per block (%d bytes, want %d)", tc.name, chunk, out.Len(), len(want))
			}
			r, release, err := newDecompressor(bytes.NewReader(out.Bytes()), Zstd)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			release()
			if err != nil || !bytes.Equal(got, in) {
				t.Errorf("%s, writes of %d: decoded %d bytes, %v; want the %d bytes written", tc.name, chunk, len(got), err, len(in))
			}
		}
	}
}

// TestFrameWriterFailingOutput: a failure of the output is returned by a
// later Write or by Close, and no goroutine is left behind.
func TestFrameWriterFailingOutput(t *testing.T) {
	before := runtime.NumGoroutine()
	boom := errors.New("boom")
	fw, err := newFrameWriter(writerFunc(func([]byte) (int, error) { return 0, boom }), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	in := testInput(100_000, 3)
	var werr error
	for off := 0; off < len(in) && werr == nil; off += 1000 {
		_, werr = fw.Write(in[off : off+1000])
	}
	if cerr := fw.Close(); !errors.Is(werr, boom) && !errors.Is(cerr, boom) {
		t.Errorf("Write: %v, Close: %v; want %v from one of them", werr, cerr, boom)
	}
	waitGoroutines(t, before)
}

// TestWriteCancelledLeavesNoGoroutine: a save cancelled while compressing
// returns the cancellation and leaves no goroutine running.
func TestWriteCancelledLeavesNoGoroutine(t *testing.T) {
	src := filepath.Join(tempDir(t), "src")
	for i := range 8 {
		writeFile(t, filepath.Join(src, "f"+strings.Repeat("x", i)), string(testInput(4<<20, uint64(i))), 0o644, time.Now())
	}
	for i := range 300 { // read ahead
		writeFile(t, filepath.Join(src, "small", strconv.Itoa(i)), string(testInput(20_000, uint64(i))), 0o644, time.Now())
	}
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	out := writerFunc(func(p []byte) (int, error) {
		cancel() // at the first frame, while files are still being read
		return len(p), nil
	})
	_, err := Write(ctx, out, []string{src}, Zstd, 0, nil)
	cancel()
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Write: %v, want context.Canceled", err)
	}
	waitGoroutines(t, before)
}

// waitGoroutines fails unless the number of goroutines falls back to n soon
// (goroutines that have returned may take a moment to be counted out).
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines left, want %d:\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMultiFrameDamage: in an archive of several frames, a flipped byte in a
// later frame, a stream cut inside a frame, and a stream cut exactly at a
// frame boundary (a valid zstd stream, but without the tar trailer) are all
// ErrCorrupt, and the target is left as it was.
func TestMultiFrameDamage(t *testing.T) {
	src := filepath.Join(tempDir(t), "src")
	writeFile(t, filepath.Join(src, "big"), string(testInput(3*zstdBlockSize, 9)), 0o644, time.Now())
	data, _ := mustWrite(t, []string{src}, Zstd, 0, nil)
	first := firstFrameSize(t, src)
	if first >= len(data) {
		t.Fatalf("archive of %d bytes is one frame; want several", len(data))
	}
	flipped := bytes.Clone(data)
	flipped[first+len(data[first:])/2] ^= 0x40
	for name, stream := range map[string][]byte{
		"flipped byte in frame 2":  flipped,
		"cut inside frame 2":       data[:first+100],
		"cut after frame 1":        data[:first],
		"cut before the last byte": data[:len(data)-1],
	} {
		parent, target := newTargetParent(t)
		before := snapshot(t, parent)
		_, err := Extract(context.Background(), bytes.NewReader(stream), []string{target}, Zstd, nil)
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", name, err)
		}
		if after := snapshot(t, parent); after != before {
			t.Errorf("%s: directory changed:\n%s", name, after)
		}
		assertNoLeftovers(t, parent)
	}
}

// firstFrameSize returns the size of the first zstd frame of the archive of
// src: that of its first block compressed alone (TestFrameWriter checks that
// this is what frameWriter writes).
func firstFrameSize(t *testing.T, src string) int {
	t.Helper()
	plain, _ := mustWrite(t, []string{src}, None, 0, nil)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(true), zstd.WithZeroFrames(true))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return len(enc.EncodeAll(plain[:zstdBlockSize], nil))
}

// TestZstdCommandLine: what Write produces is what the zstd command line
// decodes to the uncompressed archive, and a stream the command line made
// from that archive restores.
func TestZstdCommandLine(t *testing.T) {
	if _, err := exec.LookPath("zstd"); err != nil {
		t.Fatal("the zstd command is needed: install it (apt-get install zstd, brew install zstd)")
	}
	src := filepath.Join(tempDir(t), "src")
	makeSampleTree(t, src)
	writeFile(t, filepath.Join(src, "big"), string(testInput(zstdBlockSize+12345, 4)), 0o644, time.Now())
	plain, _ := mustWrite(t, []string{src}, None, 0, nil)
	ours, _ := mustWrite(t, []string{src}, Zstd, 0, nil)

	cmd := exec.Command("zstd", "-d", "-c", "-q")
	cmd.Stdin = bytes.NewReader(ours)
	decoded, err := cmd.Output()
	if err != nil || !bytes.Equal(decoded, plain) {
		t.Errorf("zstd -d: %v; decoded %d bytes, want the %d bytes of the tar stream", err, len(decoded), len(plain))
	}

	cmd = exec.Command("zstd", "-T0", "-3", "-c", "-q")
	cmd.Stdin = bytes.NewReader(plain)
	theirs, err := cmd.Output()
	if err != nil {
		t.Fatalf("zstd: %v", err)
	}
	target := filepath.Join(tempDir(t), "target")
	if _, err := Extract(context.Background(), bytes.NewReader(theirs), []string{target}, Zstd, nil); err != nil {
		t.Fatalf("Extract of the zstd command's stream: %v", err)
	}
	assertSameTree(t, src, target)
}

// A frameWriter lends no space once its destination failed, once aborted, or once closed.
func TestFrameWriterLendsNoSpaceAfterFailureOrClose(t *testing.T) {
	boom := errors.New("boom")
	fw, err := newFrameWriter(writerFunc(func([]byte) (int, error) { return 0, boom }), 1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var spaceErr error
	for range 100 { // fill blocks until the failed write of a frame shows
		var sp []byte
		if sp, spaceErr = fw.space(); spaceErr != nil {
			break
		}
		fw.commit(len(sp))
	}
	if !errors.Is(spaceErr, boom) {
		t.Fatalf("space after the destination failed: %v, want boom", spaceErr)
	}
	fw.abort()
	if _, err := fw.space(); err == nil {
		t.Error("space lent after abort")
	}

	var out bytes.Buffer
	fw, err = newFrameWriter(&out, 1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := fw.space()
	if err != nil || len(sp) != 1000 {
		t.Fatalf("space: %d, %v", len(sp), err)
	}
	fw.commit(10)
	if sp, err = fw.space(); err != nil || len(sp) != 990 {
		t.Fatalf("space after a commit of 10: %d, %v", len(sp), err)
	}
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := fw.space(); err == nil {
		t.Error("space lent after Close")
	}
	if _, err := fw.Write([]byte("x")); err == nil {
		t.Error("write after Close succeeded")
	}
}

// randomInput returns n bytes that no compressor can shrink.
func randomInput(n int, seed uint64) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{byte(seed)}).Read(b)
	return b
}

// wordText returns n bytes of text made of words drawn at random from a
// vocabulary: compressible, but not trivially.
func wordText(n int, seed uint64) []byte {
	rnd := rand.New(rand.NewPCG(seed, 2))
	words := make([]string, 2000)
	for i := range words {
		w := make([]byte, 3+rnd.IntN(8))
		for j := range w {
			w[j] = byte('a' + rnd.IntN(26))
		}
		words[i] = string(w)
	}
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[rnd.IntN(len(words))])
		b.WriteByte(" \n"[rnd.IntN(2)])
	}
	return b.Bytes()[:n]
}

// TestRawRuns: the runs stored raw are the runs of whole segments that look
// random, of rawRunMin or more; a compressible run longer than the sampling
// stride anywhere in a segment keeps it compressed, a tar header does not.
func TestRawRuns(t *testing.T) {
	const seg, block = rawBlockMax, zstdBlockSize
	text := wordText(block, 1)
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	_, _ = zw.Write(wordText(4*block, 2))
	_ = zw.Close()
	if gz.Len() < 1<<20 {
		t.Fatalf("only %d bytes of gzip data", gz.Len())
	}
	random := func(n int) []byte { return randomInput(n, uint64(n)) }
	with := func(b []byte, at int, what []byte) []byte {
		b = bytes.Clone(b)
		copy(b[at:], what)
		return b
	}
	best, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	if err != nil {
		t.Fatal(err)
	}
	defer best.Close()
	zst := best.EncodeAll(wordText(3*block/4, 3), nil) // entropy-coded tables and sequences: 7.3 to 7.9 bits a sample
	if len(zst) < rawRunMin {
		t.Fatalf("only %d bytes of zstd data", len(zst))
	}
	// Runs of bytes drawn from fewer values than 256, equally likely: what a
	// 1 KiB sample of them measures is a little under log2(values).
	rnd := rand.New(rand.NewPCG(4, 5))
	skewed := func(values int) []byte {
		b := make([]byte, sampleStride)
		for i := range b {
			b[i] = byte(rnd.IntN(values))
		}
		return b
	}
	header := make([]byte, 512) // a tar header: mostly zeros and ASCII
	copy(header, "node_modules/lodash/package.json\x00\x000000644\x000000000\x00")
	for _, tc := range []struct {
		name string
		src  []byte
		want []span
	}{
		{"random block", random(block), []span{{0, block}}},
		{"random, the shortest run", random(rawRunMin), []span{{0, rawRunMin}}},
		{"random, a short tail joins the last segment", random(rawRunMin + 17), []span{{0, rawRunMin + 17}}},
		{"random, too short a run", random(rawRunMin - 1), nil},
		{"gzip output", gz.Bytes()[:1<<20], []span{{0, 1 << 20}}},
		{"zstd output at its highest level", zst[:rawRunMin], []span{{0, rawRunMin}}},
		{"random with a run of 6.7 bits per byte (machine code: up to 6.3)", with(random(block), 2*seg, skewed(112)), []span{{3 * seg, block}}},
		{"random with a run of 7.4 bits per byte (compressed formats: from 7.3)", with(random(block), 2*seg, skewed(181)), []span{{0, block}}},
		{"random, text in the last 1000 bytes of a merged tail", with(random(rawRunMin+1000), rawRunMin, text[:1000]), nil},
		{"text", text, nil},
		{"zeros", make([]byte, block), nil},
		{"empty", nil, nil},
		{"random with text at the start", with(random(block), 0, text[:sampleStride]), []span{{seg, block}}},
		{"random with text between the samples", with(random(block), block/2+randomSample, text[:sampleStride]),
			[]span{{0, block / 2}, {block/2 + seg, block}}},
		{"random with text in the last segment", with(random(block), block-sampleStride, text[:sampleStride]), []span{{0, block - seg}}},
		{"random with a tar header in a sample", with(random(block), 5*seg, header), []span{{0, 5 * seg}, {6 * seg, block}}},
		{"random with a tar header between the samples", with(random(block), 5*seg+2*randomSample, header), []span{{0, block}}},
		{"half random, half text", append(random(block/2), text[:block/2]...), []span{{0, block / 2}}},
		{"a short random run among text", append(append(append(random(2*rawRunMin), text[:seg]...), random(rawRunMin-seg)...), text[:seg]...),
			[]span{{0, 2 * rawRunMin}}},
	} {
		if got := rawRuns(tc.src); !slices.Equal(got, tc.want) {
			t.Errorf("%s: raw runs %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestStoredFrames: a random block is written as a raw frame (no search for
// matches, no frame checksum), a compressible one as before; the stream
// decodes, with this package and with the zstd command line, and a flipped
// byte in a raw frame is caught by the archive's checksum, leaving the target
// as it was.
func TestStoredFrames(t *testing.T) {
	src := filepath.Join(tempDir(t), "src")
	random := randomInput(2*zstdBlockSize+12345, 7)
	writeFile(t, filepath.Join(src, "a.random"), string(random), 0o644, time.Now())
	writeFile(t, filepath.Join(src, "b.text"), string(testInput(zstdBlockSize, 8)), 0o644, time.Now())
	plain, _ := mustWrite(t, []string{src}, None, 0, nil)
	data, _ := mustWrite(t, []string{src}, Zstd, 0, nil)

	// Frames in order: the first block's first segment holds the tar
	// headers (compressed), the rest of it random bytes (raw); the second
	// block is random (raw); the rest is text.
	frames := zstdFrames(t, data)
	kinds := make([]bool, len(frames))
	for i, frame := range frames {
		kinds[i] = frame.raw
	}
	if want := []bool{false, true, true, false, false}; !slices.Equal(kinds, want) {
		t.Fatalf("frames stored raw: %v, want %v", kinds, want)
	}
	if !bytes.Equal(frames[1].data[rawFrameHeader+3:][:rawBlockMax], plain[rawBlockMax:][:rawBlockMax]) {
		t.Error("the first raw frame does not hold the tar bytes as they are")
	}

	cmd := exec.Command("zstd", "-d", "-c", "-q")
	cmd.Stdin = bytes.NewReader(data)
	if decoded, err := cmd.Output(); err != nil || !bytes.Equal(decoded, plain) {
		t.Errorf("zstd -d: %v; decoded %d bytes, want the %d bytes of the tar stream", err, len(decoded), len(plain))
	}
	target := filepath.Join(tempDir(t), "target")
	if _, err := Extract(context.Background(), bytes.NewReader(data), []string{target}, Zstd, nil); err != nil {
		t.Fatalf("Extract: %v", err)
	}
	assertSameTree(t, src, target)

	flipped := bytes.Clone(data)
	flipped[len(frames[0].data)+len(frames[1].data)+len(frames[2].data)/2] ^= 0x40
	parent, target := newTargetParent(t)
	before := snapshot(t, parent)
	if _, err := Extract(context.Background(), bytes.NewReader(flipped), []string{target}, Zstd, nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a flipped byte in a raw frame: err = %v, want ErrCorrupt", err)
	}
	if after := snapshot(t, parent); after != before {
		t.Errorf("a flipped byte in a raw frame: directory changed:\n%s", after)
	}
	assertNoLeftovers(t, parent)
}

// rawFrameHeader is the size of the header appendRawFrame writes: magic
// number, descriptor, content size.
const rawFrameHeader = 4 + 1 + 4

// zstdFrame is one frame of a zstd stream.
type zstdFrame struct {
	data []byte
	raw  bool // every block raw, no checksum: stored, not compressed
}

// zstdFrames splits a stream into its frames, by walking each frame's
// header and block headers.
func zstdFrames(t *testing.T, stream []byte) []zstdFrame {
	t.Helper()
	var frames []zstdFrame
	for len(stream) > 0 {
		var h zstd.Header
		if err := h.Decode(stream); err != nil {
			t.Fatalf("frame %d: %v", len(frames)+1, err)
		}
		raw := !h.HasCheckSum
		off := h.HeaderSize
		for last := false; !last; {
			if off+3 > len(stream) {
				t.Fatalf("frame %d is cut short", len(frames)+1)
			}
			bh := uint32(stream[off]) | uint32(stream[off+1])<<8 | uint32(stream[off+2])<<16
			last = bh&1 == 1
			size := int(bh >> 3)
			switch (bh >> 1) & 3 {
			case 0: // raw
			case 1: // RLE: one byte stands for size bytes
				size, raw = 1, false
			default:
				raw = false
			}
			off += 3 + size
		}
		if h.HasCheckSum {
			off += 4
		}
		frames = append(frames, zstdFrame{stream[:off], raw})
		stream = stream[off:]
	}
	return frames
}
