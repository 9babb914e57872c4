package archive

import (
	"bytes"
	"context"
	"fmt"
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
