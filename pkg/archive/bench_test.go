package archive

import (
	"bytes"
	"context"
	"fmt"
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
