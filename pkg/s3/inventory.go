package s3

// Why a file: what the s3-cache command (pkg/inventory) needs of the bucket as a whole, and the
// last-use marker a restore writes: whole listings, batch deletes, incomplete uploads.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// DeleteBatch is the most keys one DeleteObjects call takes (S3's limit).
const DeleteBatch = 1000

// Entry is one object of a listing.
type Entry struct {
	Key      string
	Size     int64
	Modified time.Time // LastModified
}

// List calls fn with every object whose key starts with prefix, in key order, one page
// (ListObjectsV2, up to 1,000 keys) at a time. An error of fn stops the listing and is returned.
func (s *Store) List(ctx context.Context, prefix string, fn func([]Entry) error) error {
	in := &awss3.ListObjectsV2Input{Bucket: &s.opts.Bucket, Prefix: &prefix}
	for {
		out, err := s.client.ListObjectsV2(ctx, in)
		if err != nil {
			return fmt.Errorf("list %s: %w", prefix, err)
		}
		page := make([]Entry, 0, len(out.Contents))
		for _, o := range out.Contents {
			page = append(page, Entry{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size), Modified: aws.ToTime(o.LastModified)})
		}
		if err := fn(page); err != nil {
			return err
		}
		if !aws.ToBool(out.IsTruncated) || aws.ToString(out.NextContinuationToken) == "" {
			return nil
		}
		in.ContinuationToken = out.NextContinuationToken
	}
}

// Folders lists one level below prefix (ListObjectsV2 with the delimiter "/"): the folders
// (common prefixes, each ending in "/") and the objects directly at that level.
func (s *Store) Folders(ctx context.Context, prefix string) ([]string, []Entry, error) {
	var folders []string
	var objects []Entry
	in := &awss3.ListObjectsV2Input{Bucket: &s.opts.Bucket, Prefix: &prefix, Delimiter: aws.String("/")}
	for {
		out, err := s.client.ListObjectsV2(ctx, in)
		if err != nil {
			return nil, nil, fmt.Errorf("list the folders of %s: %w", prefix, err)
		}
		for _, p := range out.CommonPrefixes {
			folders = append(folders, aws.ToString(p.Prefix))
		}
		for _, o := range out.Contents {
			objects = append(objects, Entry{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size), Modified: aws.ToTime(o.LastModified)})
		}
		if !aws.ToBool(out.IsTruncated) || aws.ToString(out.NextContinuationToken) == "" {
			return folders, objects, nil
		}
		in.ContinuationToken = out.NextContinuationToken
	}
}

// DeleteKeys removes keys with DeleteObjects calls of at most DeleteBatch keys each. A key
// that does not exist counts as removed (S3's answer too). The keys S3 refused are named in
// the error, joined with the failures of whole calls; the other keys are removed regardless.
func (s *Store) DeleteKeys(ctx context.Context, keys []string) error {
	var errs []error
	for start := 0; start < len(keys); start += DeleteBatch {
		batch := keys[start:min(start+DeleteBatch, len(keys))]
		ids := make([]types.ObjectIdentifier, len(batch))
		for i := range batch {
			ids[i] = types.ObjectIdentifier{Key: &batch[i]}
		}
		out, err := s.client.DeleteObjects(ctx, &awss3.DeleteObjectsInput{Bucket: &s.opts.Bucket,
			Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)}})
		if err != nil {
			errs = append(errs, fmt.Errorf("delete %d object(s) from %s: %w", len(batch), batch[0], err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		for _, e := range out.Errors {
			errs = append(errs, fmt.Errorf("delete %s: %s: %s", aws.ToString(e.Key), aws.ToString(e.Code), aws.ToString(e.Message)))
		}
	}
	return errors.Join(errs...)
}

// Upload is an incomplete multipart upload.
type Upload struct {
	Key, ID   string
	Initiated time.Time
}

// Uploads lists the incomplete multipart uploads of keys starting with prefix.
func (s *Store) Uploads(ctx context.Context, prefix string) ([]Upload, error) {
	var ups []Upload
	in := &awss3.ListMultipartUploadsInput{Bucket: &s.opts.Bucket, Prefix: &prefix}
	for {
		out, err := s.client.ListMultipartUploads(ctx, in)
		if err != nil {
			return ups, fmt.Errorf("list multipart uploads of %s: %w", prefix, err)
		}
		for _, u := range out.Uploads {
			ups = append(ups, Upload{Key: aws.ToString(u.Key), ID: aws.ToString(u.UploadId), Initiated: aws.ToTime(u.Initiated)})
		}
		if !aws.ToBool(out.IsTruncated) || aws.ToString(out.NextKeyMarker) == "" && aws.ToString(out.NextUploadIdMarker) == "" {
			return ups, nil
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
}

// AbortUpload aborts one incomplete multipart upload; one that is gone already is no error.
func (s *Store) AbortUpload(ctx context.Context, u Upload) error {
	_, err := s.client.AbortMultipartUpload(ctx, &awss3.AbortMultipartUploadInput{Bucket: &s.opts.Bucket,
		Key: &u.Key, UploadId: &u.ID})
	if err != nil && code(err) != "NoSuchUpload" {
		return fmt.Errorf("abort multipart upload %s of %s: %w", u.ID, u.Key, err)
	}
	return nil
}

// Mark writes an empty object at key, overwriting any: a last-use marker
// (docs/design.md#last-use-tracking-and-gc). It carries the configured server-side encryption
// (a bucket policy may demand it) but not the storage class: classes with a minimum object size
// would bill an empty marker as a large object.
func (s *Store) Mark(ctx context.Context, key string) error {
	in := &awss3.PutObjectInput{Bucket: &s.opts.Bucket, Key: &key, Body: bytes.NewReader(nil),
		ContentLength: aws.Int64(0)}
	var class types.StorageClass
	s.applyPutSettings(&class, &in.ServerSideEncryption, &in.SSEKMSKeyId)
	if _, err := s.client.PutObject(ctx, in); err != nil {
		return fmt.Errorf("mark %s: %w", key, err)
	}
	return nil
}
