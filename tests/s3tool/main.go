// Command s3tool drives the test servers for the bats tests and the demo.
//
//	s3tool serve -kind versitygw -dir DIR -bucket B -env-file F   start a server; write its env to F; run until SIGTERM
//	s3tool ls -endpoint URL -bucket B [-prefix P]                 list objects: "<key> <size> <etag>"
//	s3tool uploads -endpoint URL -bucket B                        count incomplete multipart uploads
//	s3tool put -endpoint URL -bucket B -key K -file F             store a file as an object (plain PUT)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/s3test"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: s3tool serve|ls|uploads|put [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	kind := fs.String("kind", s3test.Versitygw, "server kind: versitygw or minio")
	dir := fs.String("dir", "", "server data directory")
	bucket := fs.String("bucket", "s3-cache-test", "bucket")
	envFile := fs.String("env-file", "", "where serve writes the server's environment")
	endpoint := fs.String("endpoint", "", "server endpoint")
	prefix := fs.String("prefix", "", "key prefix")
	key := fs.String("key", "", "object key")
	file := fs.String("file", "", "file to upload")
	_ = fs.Parse(os.Args[2:])

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv := &s3test.Server{Endpoint: *endpoint, Bucket: *bucket}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(ctx, *kind, *dir, *bucket, *envFile)
	case "ls":
		err = ls(ctx, srv.Client(), *bucket, *prefix)
	case "uploads":
		var out *awss3.ListMultipartUploadsOutput
		out, err = srv.Client().ListMultipartUploads(ctx, &awss3.ListMultipartUploadsInput{Bucket: bucket})
		if err == nil {
			fmt.Println(len(out.Uploads))
		}
	case "put":
		var f *os.File
		if f, err = os.Open(*file); err == nil {
			defer f.Close()
			_, err = srv.Client().PutObject(ctx, &awss3.PutObjectInput{Bucket: bucket, Key: key, Body: f})
		}
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "s3tool:", err)
		os.Exit(1)
	}
}

func serve(ctx context.Context, kind, dir, bucket, envFile string) error {
	srv, err := s3test.Start(ctx, kind, dir, bucket)
	if err != nil {
		return err
	}
	defer srv.Stop()
	env := strings.Join(append(srv.Env(), "S3_CACHE_TEST_ENDPOINT="+srv.Endpoint), "\n") + "\n"
	tmp := envFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(env), 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, envFile); err != nil { // readers wait for the file to appear whole
		return err
	}
	<-ctx.Done()
	return nil
}

func ls(ctx context.Context, c *awss3.Client, bucket, prefix string) error {
	p := awss3.NewListObjectsV2Paginator(c, &awss3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, o := range page.Contents {
			fmt.Printf("%s %d %s\n", aws.ToString(o.Key), aws.ToInt64(o.Size), aws.ToString(o.ETag))
		}
	}
	return nil
}
