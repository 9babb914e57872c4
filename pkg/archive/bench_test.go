package archive

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
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
