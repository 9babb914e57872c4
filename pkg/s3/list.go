package s3

// Why a file: the one listing the plugin makes, for the newest-match fallback.

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
)

// ListLimit bounds the listing of Newest: one ListObjectsV2 call of at most this many keys.
const ListLimit = 1000

// Listed is what Newest found below a prefix.
type Listed struct {
	Object              // the newest object (Key, Size and ETag from the listing)
	Modified  time.Time // its LastModified
	Count     int       // the objects listed
	Truncated bool      // the prefix holds more than ListLimit objects: Newest saw the first ListLimit, in key order
}

// Newest returns the most recently modified object whose key starts with prefix, from one
// ListObjectsV2 call bounded by ListLimit keys: ErrNotFound when there is none. Keys ending in
// "/" (folder markers) are not objects. Of objects modified at the same moment, the greatest key
// wins, so the answer does not depend on the listing's order.
func (s *Store) Newest(ctx context.Context, prefix string) (Listed, error) {
	// One level: a key below a deeper folder of the prefix is no member (another save's prefix
	// key could put one there).
	out, err := s.client.ListObjectsV2(ctx, &awss3.ListObjectsV2Input{Bucket: &s.opts.Bucket, Prefix: &prefix,
		Delimiter: aws.String("/"), MaxKeys: aws.Int32(ListLimit)})
	if err != nil {
		return Listed{}, fmt.Errorf("list %s: %w", prefix, err)
	}
	var l Listed
	for _, o := range out.Contents {
		key, mod := aws.ToString(o.Key), aws.ToTime(o.LastModified)
		if strings.HasSuffix(key, "/") || !member(strings.TrimPrefix(key, prefix)) {
			continue
		}
		l.Count++
		if l.Key == "" || mod.After(l.Modified) || mod.Equal(l.Modified) && key > l.Key {
			l.Object = Object{Key: key, Size: aws.ToInt64(o.Size), ETag: aws.ToString(o.ETag)}
			l.Modified = mod
		}
	}
	l.Truncated = aws.ToBool(out.IsTruncated)
	if l.Count == 0 {
		return l, fmt.Errorf("list %s: %w", prefix, ErrNotFound)
	}
	return l, nil
}

// member reports whether name, below a family's folder, is a cache object's: 32 hex digits and
// an archive extension, as cachekey names them. Anything else was not saved as a family member.
func member(name string) bool {
	base, _, ok := strings.Cut(name, ".tar")
	if !ok || len(base) != 32 || strings.Trim(base, "0123456789abcdef") != "" {
		return false
	}
	switch strings.TrimPrefix(name, base) {
	case ".tar", ".tar.zst", ".tar.gz":
		return true
	}
	return false
}
