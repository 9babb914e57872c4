// Package s3test starts real S3-compatible servers on loopback for tests: versitygw and MinIO,
// built from the versions pinned in tools/ by scripts/build-tools. A missing server binary is a
// test failure that says how to build it, never a skip; in -short mode the tests that need a
// server are skipped as a layer (see Integration).
package s3test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/s3"
)

// Credentials of the test servers' root user.
const (
	AccessKey = "s3cacheaccess"
	SecretKey = "s3cachesecret-0123456789"
)

// Kinds of server.
const (
	Versitygw = "versitygw"
	MinIO     = "minio"
)

// Kinds lists every real server the integration suite runs against.
var Kinds = []string{Versitygw, MinIO}

// Server is a running server with one bucket.
type Server struct {
	Kind     string
	Endpoint string // http://127.0.0.1:PORT
	Bucket   string
	Region   string // the region it checks signatures against (versitygw; MinIO accepts any); "": us-east-1
	Dir      string // its data directory
	cmd      *exec.Cmd
	binary   string
	port     int
	logFile  string
}

// BinDir is where scripts/build-tools puts the servers: $S3_CACHE_TOOLS_BIN, or
// ~/.cache/s3-cache-tools.
func BinDir() string {
	if d := os.Getenv("S3_CACHE_TOOLS_BIN"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "s3-cache-tools")
}

// Binary returns the path of the server of kind, or an error that says how to build it.
func Binary(kind string) (string, error) {
	p := filepath.Join(BinDir(), kind)
	if fi, err := os.Stat(p); err != nil || fi.IsDir() {
		return "", fmt.Errorf("%s server not found at %s: build the pinned test servers with `scripts/build-tools` (or `make tools`), or set S3_CACHE_TOOLS_BIN to the directory that holds them", kind, p)
	}
	return p, nil
}

// Start starts a server of kind with its data in dir and creates bucket, in us-east-1.
func Start(ctx context.Context, kind, dir, bucket string) (*Server, error) {
	return StartIn(ctx, kind, dir, bucket, "us-east-1")
}

// StartIn starts a server as Start does, in region.
func StartIn(ctx context.Context, kind, dir, bucket, region string) (*Server, error) {
	bin, err := Binary(kind)
	if err != nil {
		return nil, err
	}
	s := &Server{Kind: kind, Dir: dir, Bucket: bucket, Region: region, binary: bin, logFile: filepath.Join(dir, kind+".log")}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, err
	}
	var lastErr error
	for range 5 { // a port picked free may be taken before the server binds it: pick again
		if s.port, err = freePort(); err != nil {
			return nil, err
		}
		if lastErr = s.start(ctx); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		return nil, lastErr
	}
	if err := s.createBucket(ctx); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// Restart starts a stopped server again on the same port with the same data.
func (s *Server) Restart(ctx context.Context) error { return s.start(ctx) }

func (s *Server) start(ctx context.Context) error {
	addr := "127.0.0.1:" + strconv.Itoa(s.port)
	s.Endpoint = "http://" + addr
	data := filepath.Join(s.Dir, "data")
	var cmd *exec.Cmd
	switch s.Kind {
	case Versitygw:
		cmd = exec.Command(s.binary, "--access", AccessKey, "--secret", SecretKey, "--port", addr, "--quiet", "--region", s.region(),
			"posix", "--sidecar", filepath.Join(s.Dir, "meta"), "--versioning-dir", filepath.Join(s.Dir, "versions"), data)
		for _, d := range []string{"meta", "versions"} {
			if err := os.MkdirAll(filepath.Join(s.Dir, d), 0o755); err != nil {
				return err
			}
		}
	case MinIO:
		cmd = exec.Command(s.binary, "server", "--quiet", "--address", addr, data)
		cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+AccessKey, "MINIO_ROOT_PASSWORD="+SecretKey,
			"MINIO_BROWSER=off", "MINIO_UPDATE=off", "CI=true")
	default:
		return fmt.Errorf("unknown server kind %q", s.Kind)
	}
	logf, err := os.OpenFile(s.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.Kind, err)
	}
	s.cmd = cmd
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case err := <-exited:
			log, _ := os.ReadFile(s.logFile)
			return fmt.Errorf("%s exited at start (%v): %s", s.Kind, err, tail(log))
		case <-deadline:
			s.Stop()
			return fmt.Errorf("%s did not answer on %s within 60s", s.Kind, addr)
		case <-ctx.Done():
			s.Stop()
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := http.Get(s.Endpoint + "/")
		if err == nil {
			resp.Body.Close()
			go func() { <-exited }() // reap
			return nil
		}
	}
}

// Stop kills the server (SIGKILL: tests use it to simulate a crash too).
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		// Wait until the port is free so Restart can bind it.
		for range 100 {
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(s.port), 50*time.Millisecond)
			if err != nil {
				break
			}
			c.Close()
			time.Sleep(50 * time.Millisecond)
		}
		s.cmd = nil
	}
}

func (s *Server) region() string {
	if s.Region == "" {
		return "us-east-1"
	}
	return s.Region
}

// Client returns an S3 client for the server.
func (s *Server) Client() *awss3.Client {
	return awss3.New(awss3.Options{
		Region:       s.region(),
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, ""),
	})
}

// Options returns the options of a Store on the server's bucket. Probe verdicts are cached in
// the server's directory, not the user's.
func (s *Server) Options() s3.Options {
	return s3.Options{
		Bucket: s.Bucket, Endpoint: s.Endpoint, Region: s.region(),
		Credentials: credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, ""),
		VerdictDir:  filepath.Join(s.Dir, "verdicts"),
	}
}

// Store returns a Store on the server's bucket with the given tuning.
func (s *Server) Store(ctx context.Context, concurrency int, partSize int64) (*s3.Store, error) {
	o := s.Options()
	o.Concurrency, o.PartSize = concurrency, partSize
	return s3.New(ctx, o)
}

// Env returns the environment variables that point the plugin at this server.
func (s *Server) Env() []string {
	return []string{
		"BUILDKITE_PLUGIN_S3_CACHE_BUCKET=" + s.Bucket,
		"BUILDKITE_PLUGIN_S3_CACHE_ENDPOINT=" + s.Endpoint,
		"AWS_ACCESS_KEY_ID=" + AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + SecretKey,
		"AWS_REGION=" + s.region(),
	}
}

func (s *Server) createBucket(ctx context.Context) error {
	var err error
	for range 50 { // MinIO answers HTTP before it accepts bucket operations
		_, err = s.Client().CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: &s.Bucket})
		if err == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("create bucket %s on %s: %w", s.Bucket, s.Kind, err)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
