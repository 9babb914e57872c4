package cache_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/s3test"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/archive"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cachekey"
)

// flipObjectByte flips one byte in the middle of the object at name: damage
// at rest that S3 itself does not notice.
func flipObjectByte(t *testing.T, srv *s3test.Server, name string) {
	t.Helper()
	out, err := srv.Client().GetObject(t.Context(), &awss3.GetObjectInput{Bucket: aws.String(srv.Bucket), Key: &name})
	must(t, err)
	body, err := io.ReadAll(out.Body)
	_ = out.Body.Close()
	must(t, err)
	body[len(body)/2] ^= 0x55
	_, err = srv.Client().PutObject(t.Context(), &awss3.PutObjectInput{
		Bucket: aws.String(srv.Bucket), Key: &name, Body: bytes.NewReader(body),
	})
	must(t, err)
}

// A saved object with one byte flipped is detected whatever the compression, none included
// (whose archive carries its own checksum): the restore restarts, then gives up with
// ErrCorrupt, and the target and its directory are left exactly as they were.
func TestRestoreOfACorruptObjectFailsCleanly(t *testing.T) {
	s3test.Each(t, func(t *testing.T, srv *s3test.Server) {
		for _, c := range []archive.Compression{archive.None, archive.Zstd, archive.Gzip} {
			t.Run(string(c), func(t *testing.T) {
				src := filepath.Join(t.TempDir(), "c")
				makeTree(t, src, 1<<20) // the middle byte of the object is in the random file
				saver, _, _ := newCache(t, srv, []string{src}, 2)
				saver.Options.Compression = c
				k := key("corrupt/key" + c.Extension())
				_, err := saveOne(t, saver, k)
				must(t, err)
				flipObjectByte(t, srv, k.Name)

				dst := filepath.Join(t.TempDir(), "c")
				makeTree(t, dst, 10)
				before := listing(t, dst)
				parentBefore, _ := os.ReadDir(filepath.Dir(dst))
				r, _, log := newCache(t, srv, []string{dst}, 2)
				r.Options.Compression = c
				r.Options.Restarts = 2
				_, err = r.Restore(t.Context(), []cachekey.Key{k})
				if !errors.Is(err, archive.ErrCorrupt) || !strings.Contains(err.Error(), "gave up after 2 restart(s)") ||
					!strings.Contains(log.String(), "Restarting restore of "+k.Name+" (2/2)") {
					t.Fatalf("restore of a corrupt object: %v; want ErrCorrupt after 2 restarts\n%s", err, log)
				}
				if after := listing(t, dst); after != before {
					t.Fatalf("target changed:\n%s\nwas:\n%s", after, before)
				}
				if parentAfter, _ := os.ReadDir(filepath.Dir(dst)); len(parentAfter) != len(parentBefore) {
					t.Fatalf("staging left behind: %v", parentAfter)
				}
			})
		}
	})
}
