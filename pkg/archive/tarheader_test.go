package archive

import (
	"archive/tar"
	"bytes"
	"strings"
	"testing"
	"time"
)

// tarWriterHeader returns what a tar.Writer writes for hdr before any
// content, or its error.
func tarWriterHeader(hdr *tar.Header) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	h := *hdr
	err := tw.WriteHeader(&h)
	return buf.Bytes(), err
}

// checkAppendHeader: appendHeader writes hdr as tar.Writer does, or declines.
func checkAppendHeader(t *testing.T, hdr *tar.Header) (ok bool) {
	t.Helper()
	prefix := []byte("before")
	got, ok := appendHeader(bytes.Clone(prefix), hdr)
	if !bytes.HasPrefix(got, prefix) {
		t.Fatalf("%+v: appendHeader did not append to dst", hdr)
	}
	if !ok {
		if len(got) != len(prefix) {
			t.Fatalf("%+v: declined but appended %d bytes", hdr, len(got)-len(prefix))
		}
		return false
	}
	want, err := tarWriterHeader(hdr)
	if err != nil {
		t.Fatalf("%+v: appendHeader wrote a header tar.Writer refuses: %v", hdr, err)
	}
	if got = got[len(prefix):]; !bytes.Equal(got, want) {
		t.Fatalf("%+v: appendHeader wrote %d bytes\n%q\nwant tar.Writer's %d\n%q", hdr, len(got), got, len(want), want)
	}
	return true
}

// TestAppendHeader: the headers this package writes come out byte for byte
// as tar.Writer writes them; any other header is left to tar.Writer.
func TestAppendHeader(t *testing.T) {
	mtime := time.Date(2026, 12, 2, 13, 22, 11, 66839320, time.UTC)
	long := "0/" + strings.Repeat("n", 98) // 100 bytes
	common := func(typ byte, name string, edit func(*tar.Header)) *tar.Header {
		h := &tar.Header{Typeflag: typ, Name: name, Mode: 0o644, ModTime: mtime, Format: tar.FormatPAX}
		if edit != nil {
			edit(h)
		}
		return h
	}
	for _, tc := range []struct {
		name string
		hdr  *tar.Header
		want bool
	}{
		{"file, nanoseconds", common(tar.TypeReg, "0/lib/index.js", func(h *tar.Header) { h.Size = 12345 }), true},
		{"file, whole seconds", common(tar.TypeReg, "0/a", func(h *tar.Header) { h.ModTime = mtime.Truncate(time.Second) }), true},
		{"file, one nanosecond", common(tar.TypeReg, "0/a", func(h *tar.Header) { h.ModTime = time.Unix(1, 1) }), true},
		{"file, a tenth of a second", common(tar.TypeReg, "0/a", func(h *tar.Header) { h.ModTime = time.Unix(1, 1e8) }), true},
		{"file, at the epoch", common(tar.TypeReg, "0/a", func(h *tar.Header) { h.ModTime = time.Unix(0, 0) }), true},
		{"file, the largest octal size", common(tar.TypeReg, "0/a", func(h *tar.Header) { h.Size = 1<<33 - 1 }), true},
		{"file, setuid and sticky", common(tar.TypeReg, "0/a", func(h *tar.Header) { h.Mode = 0o7777 }), true},
		{"a file target", common(tar.TypeReg, "1", nil), true},
		{"directory", common(tar.TypeDir, "0/node_modules/", func(h *tar.Header) { h.Mode = 0o755 }), true},
		{"top-level directory", common(tar.TypeDir, "0/", nil), true},
		{"symlink", common(tar.TypeSymlink, "0/.bin/tsc", func(h *tar.Header) { h.Linkname = "../typescript/bin/tsc" }), true},
		{"hard link", common(tar.TypeLink, "0/b", func(h *tar.Header) { h.Linkname = "0/a" }), true},
		{"name of 100 bytes", common(tar.TypeReg, long, nil), true},
		{"directory name of 100 bytes", common(tar.TypeDir, long[:99]+"/", nil), true},
		{"link name of 100 bytes", common(tar.TypeSymlink, "0/s", func(h *tar.Header) { h.Linkname = long }), true},
		{"odd characters", common(tar.TypeReg, "0/a b\\c\t*?.js", nil), true},

		{"name of 101 bytes", common(tar.TypeReg, long+"x", nil), false},
		{"link name of 101 bytes", common(tar.TypeSymlink, "0/s", func(h *tar.Header) { h.Linkname = long + "x" }), false},
		{"non-ASCII name", common(tar.TypeReg, "0/caf\xc3\xa9", nil), false},
		{"size over 8 GiB", common(tar.TypeReg, "0/a", func(h *tar.Header) { h.Size = 1 << 33 }), false},
		{"before the epoch", common(tar.TypeReg, "0/a", func(h *tar.Header) { h.ModTime = time.Unix(-1, 5) }), false},
		{"zero time", common(tar.TypeReg, "0/a", func(h *tar.Header) { h.ModTime = time.Time{} }), false},
		{"an owner", common(tar.TypeReg, "0/a", func(h *tar.Header) { h.Uid = 1000 }), false},
		{"PAX records", common(tar.TypeReg, "0/a", func(h *tar.Header) { h.PAXRecords = map[string]string{"comment": "x"} }), false},
		{"a directory with a size", common(tar.TypeDir, "0/d/", func(h *tar.Header) { h.Size = 1 }), false},
		{"the checksum trailer", trailerHeader(0x1234abcd), false},
		{"USTAR format", common(tar.TypeReg, "0/a", func(h *tar.Header) { h.Format = tar.FormatUSTAR }), false},
		{"FIFO", common(tar.TypeFifo, "0/p", nil), false},
		{"file name with a trailing slash", common(tar.TypeReg, "0/a/", nil), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkAppendHeader(t, tc.hdr); got != tc.want {
				t.Errorf("appendHeader took it = %v, want %v", got, tc.want)
			}
		})
	}
}

// FuzzAppendHeader: whatever the name, link, type, mode, size and time, a
// header appendHeader writes is byte for byte tar.Writer's.
func FuzzAppendHeader(f *testing.F) {
	f.Add("0/lib/index.js", "", byte(tar.TypeReg), int64(0o644), int64(100), int64(1764681731), int64(66839320))
	f.Add("0/d/", "", byte(tar.TypeDir), int64(0o755), int64(0), int64(0), int64(1))
	f.Add("0/s", "../t", byte(tar.TypeSymlink), int64(0o777), int64(0), int64(1<<33-1), int64(999999999))
	f.Fuzz(func(t *testing.T, name, link string, typ byte, mode, size, secs, nsecs int64) {
		checkAppendHeader(t, &tar.Header{
			Typeflag: typ, Name: name, Linkname: link, Mode: mode, Size: size,
			ModTime: time.Unix(secs, nsecs), Format: tar.FormatPAX,
		})
	})
}
