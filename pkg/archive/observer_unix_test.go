//go:build linux || darwin

package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// observed is an Observer that lists its calls.
type observed struct {
	calls  []string
	stored []string // entry names as the archive holds them (a directory with its slash)
	infos  map[string]fs.FileInfo
}

func (o *observed) Stored(name string, info fs.FileInfo, link string) {
	n := name
	if info.IsDir() {
		n += "/"
	}
	o.calls = append(o.calls, "stored "+n+" "+link)
	o.stored = append(o.stored, n)
	o.infos[name] = info
}
func (o *observed) Missing(name string) { o.calls = append(o.calls, "missing "+name) }
func (o *observed) Passed(name string)  { o.calls = append(o.calls, "passed "+name) }

// TestObserverSeesWhatIsStored: the Observer is told every entry the archive
// stores, in the archive's order, with the lstat of its path (a symlink's
// target too), and every entry the walk met but left out: a FIFO, a killed
// restore's leftover, a source that does not exist. With read-ahead and
// without.
func TestObserverSeesWhatIsStored(t *testing.T) {
	src := filepath.Join(tempDir(t), "src")
	makeSampleTree(t, src) // with a FIFO
	leftover := leftoverName(nameStem("src"), kindStaging)
	writeFile(t, filepath.Join(src, leftover, "x"), "a killed restore's", 0o644, time.Now())
	file := filepath.Join(filepath.Dir(src), "file")
	writeFile(t, file, "one file", 0o644, time.Now())
	sources := []string{src, filepath.Join(filepath.Dir(src), "absent"), file}
	for _, readAhead := range []bool{true, false} {
		o := &observed{infos: map[string]fs.FileInfo{}}
		var buf bytes.Buffer
		if _, err := write(context.Background(), &buf, sources, None, 0, nil, o, readAhead); err != nil {
			t.Fatal(err)
		}
		var names []string
		tr := tar.NewReader(&buf)
		for {
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if hdr.Typeflag != tar.TypeXGlobalHeader {
				names = append(names, hdr.Name)
			}
		}
		if strings.Join(o.stored, "\n") != strings.Join(names, "\n") {
			t.Errorf("read-ahead %t: told it stored\n%s\nthe archive holds\n%s", readAhead, strings.Join(o.stored, "\n"), strings.Join(names, "\n"))
		}
		for _, want := range []string{"passed 0/fifo", "passed 0/" + leftover, "missing 1", "stored 2 "} {
			if !slices.Contains(o.calls, want) {
				t.Errorf("read-ahead %t: no call %q in\n%s", readAhead, want, strings.Join(o.calls, "\n"))
			}
		}
		for name, info := range o.infos {
			p := src
			if rest, ok := strings.CutPrefix(name, "0/"); ok {
				p = filepath.Join(src, filepath.FromSlash(rest))
			} else if name == "2" {
				p = file
			}
			want, err := os.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := info.Sys().(*syscall.Stat_t)
			if !ok || got.Ino != want.Sys().(*syscall.Stat_t).Ino || info.Mode() != want.Mode() || info.Size() != want.Size() {
				t.Errorf("%s: told %v %d, lstat gives %v %d", name, info.Mode(), info.Size(), want.Mode(), want.Size())
			}
		}
		if want := "stored 0/link-rel a/b/c/deep.txt"; !slices.Contains(o.calls, want) {
			t.Errorf("read-ahead %t: no call %q in\n%s", readAhead, want, strings.Join(o.calls, "\n"))
		}
	}
}
