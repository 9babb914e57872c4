package archive

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// BenchmarkWriteExtract archives and restores 2000 files of 16 KiB (half
// random, half repetitive), reporting MB/s of file content.
func BenchmarkWriteExtract(b *testing.B) {
	const files, size = 2000, 16 << 10
	src := filepath.Join(tempDir(b), "src")
	rnd := rand.New(rand.NewPCG(5, 6))
	content := make([]byte, size)
	for i := range files {
		for j := range content {
			if j < size/2 {
				content[j] = byte(rnd.IntN(256))
			} else {
				content[j] = byte('a' + j%7)
			}
		}
		writeFile(b, filepath.Join(src, fmt.Sprintf("d%02d/f%04d", i%50, i)), string(content), 0o644, time.Now())
	}
	for _, c := range allCompressions {
		b.Run(string(c), func(b *testing.B) {
			target := filepath.Join(tempDir(b), "target")
			var buf bytes.Buffer
			b.SetBytes(files * size)
			for b.Loop() {
				buf.Reset()
				if _, err := Write(context.Background(), &buf, []string{src}, c, 0, nil); err != nil {
					b.Fatal(err)
				}
				if _, err := Extract(context.Background(), &buf, []string{target}, c, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// testInput returns n deterministic bytes, alternately 512 random and 512
// repetitive ones, so that zstd frames are neither stored raw nor trivially
// small.
func testInput(n int, seed uint64) []byte {
	rnd := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		if (i/512)%2 == 0 {
			b[i] = byte(rnd.IntN(256))
		} else {
			b[i] = byte('a' + i%13)
		}
	}
	return b
}

// BenchmarkWrite archives a generated tree of 3000 small files (1 to 16 KiB)
// and four of 4 MiB to io.Discard, reporting MB/s of file content.
func BenchmarkWrite(b *testing.B) {
	src := filepath.Join(tempDir(b), "src")
	var total int64
	for i := range 3000 {
		content := testInput(1024+(i*977)%(15<<10), uint64(i))
		writeFile(b, filepath.Join(src, fmt.Sprintf("d%02d/f%04d", i%60, i)), string(content), 0o644, time.Now())
		total += int64(len(content))
	}
	for i := range 4 {
		writeFile(b, filepath.Join(src, fmt.Sprintf("large%d", i)), string(testInput(4<<20, uint64(10000+i))), 0o644, time.Now())
		total += 4 << 20
	}
	for _, c := range allCompressions {
		b.Run(string(c), func(b *testing.B) {
			b.SetBytes(total)
			for b.Loop() {
				if _, err := Write(context.Background(), io.Discard, []string{src}, c, 0, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCompress compresses 64 MiB held in memory with zstd at levels 1
// and 3 to io.Discard.
func BenchmarkCompress(b *testing.B) {
	in := testInput(64<<20, 7)
	for _, level := range []int{1, 3} {
		b.Run(fmt.Sprintf("zstd-%d", level), func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				w, err := newCompressor(io.Discard, Zstd, level)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := w.Write(in); err != nil {
					b.Fatal(err)
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecompress decompresses 64 MiB compressed by Write's compressor at
// levels 1 and 3, reporting MB/s of decompressed bytes.
func BenchmarkDecompress(b *testing.B) {
	in := testInput(64<<20, 8)
	for _, level := range []int{1, 3} {
		var z bytes.Buffer
		w, err := newCompressor(&z, Zstd, level)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := w.Write(in); err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("zstd-%d", level), func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				r, release, err := newDecompressor(bytes.NewReader(z.Bytes()), Zstd)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, r)
				release()
				if err != nil || n != int64(len(in)) {
					b.Fatalf("decompressed %d bytes, %v", n, err)
				}
			}
		})
	}
}

// BenchmarkExtract restores an archive of a generated tree of about 20k
// small files (sizes 0 to 16 KiB, like a node_modules), reporting MB/s of
// file content. "new" restores into a fresh target each time; "replace"
// replaces the tree of the previous iteration, so it also counts the swap and
// the removal of the previous content.
func BenchmarkExtract(b *testing.B) {
	const dirs, perDir = 400, 50
	src := filepath.Join(tempDir(b), "src")
	rnd := rand.New(rand.NewPCG(7, 8))
	var total int64
	mtime := time.Unix(1_600_000_000, 0)
	for d := range dirs {
		for f := range perDir {
			size := rnd.IntN(16 << 10)
			if f%10 == 0 {
				size = 0
			}
			content := make([]byte, size)
			for j := range content {
				content[j] = byte('a' + (j*7+f)%26)
			}
			writeFile(b, filepath.Join(src, fmt.Sprintf("pkg%03d/lib/f%02d.js", d, f)), string(content), 0o644, mtime)
			total += int64(size)
		}
	}
	var buf bytes.Buffer
	if _, err := Write(context.Background(), &buf, []string{src}, Zstd, 0, nil); err != nil {
		b.Fatal(err)
	}
	archive := buf.Bytes()
	b.Run("new", func(b *testing.B) {
		dir := tempDir(b)
		b.SetBytes(total)
		i := 0
		for b.Loop() {
			i++
			target := filepath.Join(dir, strconv.Itoa(i))
			if _, err := Extract(context.Background(), bytes.NewReader(archive), []string{target}, Zstd, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("replace", func(b *testing.B) {
		target := filepath.Join(tempDir(b), "target")
		b.SetBytes(total)
		for b.Loop() {
			if _, err := Extract(context.Background(), bytes.NewReader(archive), []string{target}, Zstd, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRemoveTree removes a tree of 20k small files in 400 directories,
// as the previous content of a target is removed after a swap, with
// os.RemoveAll and with removeTree. Building the tree is not timed.
func BenchmarkRemoveTree(b *testing.B) {
	for _, rm := range []struct {
		name string
		fn   func(string) error
	}{
		{"os.RemoveAll", os.RemoveAll},
		{"removeTree", removeTree},
	} {
		b.Run(rm.name, func(b *testing.B) {
			dir := tempDir(b)
			content := bytes.Repeat([]byte("x"), 2000)
			for b.Loop() {
				b.StopTimer()
				tree := filepath.Join(dir, "tree")
				for d := range 400 {
					sub := filepath.Join(tree, fmt.Sprintf("pkg%03d", d), "lib")
					if err := os.MkdirAll(sub, 0o755); err != nil {
						b.Fatal(err)
					}
					for f := range 50 {
						if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%02d.js", f)), content, 0o644); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.StartTimer()
				if err := rm.fn(tree); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncodeBlock compresses one 8 MiB block of random bytes and one of
// text, as a frameWriter's worker does: the random one is stored raw after
// the sampling test, the text one searched for matches.
func BenchmarkEncodeBlock(b *testing.B) {
	f, err := newFrameWriter(io.Discard, 0, zstdBlockSize)
	if err != nil {
		b.Fatal(err)
	}
	defer f.abort()
	for _, in := range []struct {
		name string
		src  []byte
	}{{"random", randomInput(zstdBlockSize, 1)}, {"text", wordText(zstdBlockSize, 1)}} {
		out := make([]byte, 0, 2*zstdBlockSize)
		b.Run(in.name+"/sampled", func(b *testing.B) {
			b.SetBytes(zstdBlockSize)
			for b.Loop() {
				out = f.encode(in.src, out[:0])
			}
		})
		b.Run(in.name+"/searched", func(b *testing.B) {
			b.SetBytes(zstdBlockSize)
			for b.Loop() {
				out = f.enc.EncodeAll(in.src, out[:0])
			}
		})
	}
}
