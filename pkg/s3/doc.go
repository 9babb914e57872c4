// Package s3 stores cache archives in an S3 bucket so that concurrent jobs never corrupt or
// abort each other (docs/design.md#save, docs/design.md#restore).
//
// Saves are first-writer-wins. An archive is streamed from an io.Reader to one or more keys
// (UploadEach: one per cache level): the first part is buffered in memory, and a stream that
// ends inside it is one PutObject per key; a longer one is a multipart upload per key. Each part
// is read and buffered once and uploaded to every key, parts concurrently, and all buffers count
// against one budget of concurrency × part size, however many keys. The part size doubles every
// 1,000 parts so a stream never needs more than 10,000; grown parts leave fewer in flight, and
// only a single part larger than the budget (past part 3,000 at concurrency 8) exceeds it. A
// buffer is added only while every one is busy, so an upload that keeps up holds two or three.
// The object is created with If-None-Match: * on PutObject or CompleteMultipartUpload, so an
// object that exists is never overwritten unless the caller asks for it. Losing that race is
// reported as Stored == false, not as an error. A create whose response was lost is retried by
// the SDK, and the retry may be answered 412 (or NoSuchUpload for a Complete) although the first
// attempt stored the object: then the key is HEADed, and an ETag equal to the one this upload
// produces (the body's MD5, or the MD5 of the parts' MD5s and "-N") is reported as stored. A
// multipart upload is then aborted all the same (NoSuchUpload if it was the one that landed):
// another job's upload of the same bytes, the same tree saved twice, makes the same ETag.
//
// Not every endpoint honours If-None-Match. In ConditionalAuto mode the first conditional save
// probes the endpoint (a second conditional create of a probe object must fail, as a PutObject and
// as a multipart Complete), caches the verdict on the agent per endpoint and bucket for a day, and
// deletes the probe objects. Where the header is not honoured, or is answered with 501, a save
// checks with HEAD and then writes: a narrow race that restores survive (see below).
//
// Restores are pinned. Open reads an object with concurrent ranged GETs (up to concurrency in
// flight, of at most the part size each, smaller for an object too small to use them all: see
// rangesFor; two at first, one more each time the reader has to wait for a chunk) that each carry
// If-Match: <ETag seen by Head> (and the version ID on versioned buckets), checks every
// response's Content-Range and ETag, and returns the bytes in order. A GET of a version needs
// s3:GetObjectVersion: when one is denied (403) the Store pins by If-Match alone from then on. If the object changes or
// disappears mid-download, reading fails with ErrChanged or ErrNotFound: the caller discards
// what it read and starts again. Transport errors are retried per range. Endpoints that ignore
// If-Match still name the ETag they served, and a different one is ErrChanged too.
//
// Region: with no region from the options or the SDK's chain, New asks the bucket (HeadBucket's
// x-amz-bucket-region header) and keeps us-east-1 if it does not say. Any request answered with
// a wrong-region error (301 PermanentRedirect, 400 AuthorizationHeaderMalformed, or a header
// naming another region) switches the Store to the region the answer names, once, and is sent
// once more there.
//
// Stalls: every request body read and every response body read feeds a watchdog; a request
// without progress for the stall timeout is cancelled and retried, and response headers are
// awaited no longer than that, so a dead endpoint never hangs a job. A body the server refuses
// as damaged (XAmzContentSHA256Mismatch, BadDigest) is sent again by the SDK's retryer.
//
// Listing: Newest finds the most recently modified object below a prefix with one ListObjectsV2
// call of at most ListLimit keys, however many the prefix holds (the newest-match fallback).
//
// On failure: a multipart upload that does not complete (error, cancellation, SIGTERM) is
// aborted with a fresh context, tried again for up to 30 s, so no partial object is ever visible
// and no parts are left behind. A crash of the process itself can leave an incomplete multipart
// upload, and so can a CreateMultipartUpload whose answer is lost (the SDK's retry creates
// another; the first one's ID never reaches the job): every save aborts those of its own keys
// started over a day ago (best effort), and the README recommends the lifecycle rule
// AbortIncompleteMultipartUpload as a second line of defence. Downloads write nothing: they only
// hand bytes to the caller.
//
// Tests come in two layers. The Store makes its S3 calls through the unexported api interface
// (the SDK's client, in New): the fast layer, all that go test -short runs, drives the upload,
// download and probe flows above against a recording in-memory fake behind it (fake_test.go),
// with S3's multipart limits shrunk to kilobytes and back-offs recorded instead of slept. The
// integration layer checks the same guarantees against real servers (versitygw, MinIO, and
// gofakes3 for an endpoint without conditional completes) through internal/s3test's
// fault-injecting proxy.
package s3
