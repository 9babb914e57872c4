package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/s3test"
)

// markers lists the last-use markers in the bucket, with their LastModified.
func markers(t *testing.T, srv *s3test.Server) map[string]time.Time {
	t.Helper()
	out, err := srv.Client().ListObjectsV2(context.Background(), &awss3.ListObjectsV2Input{Bucket: aws.String(srv.Bucket),
		Prefix: aws.String(".s3-cache-used/")})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]time.Time{}
	for _, o := range out.Contents {
		m[aws.ToString(o.Key)] = aws.ToTime(o.LastModified)
	}
	return m
}

// s3cache runs the s3-cache command with the job's environment, as a nightly step on an agent would.
func s3cache(t *testing.T, j *job, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "s3-cache"), args...)
	for k, v := range j.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, "HOME="+os.Getenv("HOME"))
	out, err := cmd.CombinedOutput()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return string(out), cmd.ProcessState.ExitCode()
}

// A restore's hit leaves one marker per key and hour on an agent, which s3-cache ls shows and
// s3-cache gc reads; another agent writes its own.
func TestRestoresRecordTheirUse(t *testing.T) {
	srv := s3test.StartT(t, s3test.Versitygw)
	a, b := newAgent(t), newAgent(t)
	first := a.job(srv, "first").fill(32 << 10)
	if out, code := first.run("pre-command"); code != 0 {
		t.Fatalf("pre-command: %d\n%s", code, out)
	}
	first.mustSave()
	if m := markers(t, srv); len(m) != 0 {
		t.Fatalf("a miss and a save left markers %v", m)
	}
	key := objects(t, srv)[0]

	hit := func(ag *agent, name string) {
		t.Helper()
		out, code := ag.job(srv, name).run("pre-command")
		if code != 0 || !strings.Contains(out, "Cache hit (exact") {
			t.Fatalf("%s: exit %d\n%s", name, code, out)
		}
	}
	hit(a, "second")
	m := markers(t, srv)
	if len(m) != 1 {
		t.Fatalf("markers %v after a hit, want one", m)
	}
	var marker string
	var at time.Time
	for marker, at = range m {
	}
	if !strings.HasPrefix(marker, ".s3-cache-used/"+key+"/") {
		t.Fatalf("marker %s does not name %s", marker, key)
	}
	time.Sleep(1100 * time.Millisecond) // LastModified has a resolution of a second
	hit(a, "third")
	if again := markers(t, srv)[marker]; !again.Equal(at) {
		t.Fatalf("a second hit in the hour on the same agent wrote the marker again (%v, then %v)", at, again)
	}
	hit(b, "other-agent")
	if again := markers(t, srv)[marker]; !again.After(at) {
		t.Fatalf("another agent's hit did not write its marker (%v, then %v)", at, again)
	}

	out, code := s3cache(t, first, "ls", "--json")
	var c struct {
		Key      string    `json:"key"`
		Level    string    `json:"level"`
		LastUsed time.Time `json:"last_used"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &c) != nil || c.Key != key || c.Level != "file" ||
		!c.LastUsed.Equal(markers(t, srv)[marker]) {
		t.Fatalf("s3-cache ls: exit %d, %+v\n%s", code, c, out)
	}
	out, code = s3cache(t, first, "gc", "--max-size", "1", "--keep-recent", "0")
	if code != 0 || !strings.Contains(out, "delete "+key) || len(objects(t, srv)) != 0 || len(markers(t, srv)) != 0 {
		t.Fatalf("s3-cache gc: exit %d, left %v and %v\n%s", code, objects(t, srv), markers(t, srv), out)
	}
}
