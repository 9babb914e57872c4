package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Fuzz input modes: the low two bits choose how data reaches Extract, the
// next bit whether the target seals it first.
const (
	fuzzNone    = 0 // data is the tar stream
	fuzzZstd    = 1 // data is the tar stream, compressed here with zstd
	fuzzGzip    = 2 // data is the tar stream, compressed here with gzip
	fuzzRawZstd = 3 // data is the zstd stream itself
	// fuzzSeal: data is tar entries without an end; the target pads it and
	// appends a valid checksum trailer and the end-of-archive marker, so
	// that mutated archives still reach the swap. Ignored with fuzzRawZstd.
	fuzzSeal = 4
)

// FuzzExtract feeds arbitrary archives to Extract with two targets: one
// holding a marker tree, one missing. Whatever the input:
//   - Extract does not panic;
//   - nothing changes in the sandbox (the targets' parent and its
//     neighbours) except the targets themselves: nothing written outside,
//     no staging or old directory left;
//   - on error every target is byte for byte as it was;
//   - on success a target with entries in the archive holds exactly what
//     the archive describes, and one without is untouched.
func FuzzExtract(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed.data, seed.mode)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(true), zstd.WithEncoderConcurrency(1))
	if err != nil {
		f.Fatal(err)
	}
	// One sandbox serves every input this process runs: most inputs are
	// refused, and creating files is most of the cost of an input. An input
	// that may have changed it remakes it before it returns, so that what
	// an input covers does not depend on the input before it.
	sb := &fuzzSandbox{root: tempDir(f)} // the archive may hold read-only directories
	sb.make(f)
	f.Fuzz(func(t *testing.T, data []byte, mode byte) {
		c, stream, tarBytes := fuzzStream(t, enc, data, mode)
		targets := sb.targets()

		sb.dirty = true // until proven otherwise
		defer sb.remakeIfDirty(t)
		_, err := Extract(context.Background(), bytes.NewReader(stream), targets, c, formatting{})

		if after := sb.outsideListing(t); after != sb.outsideBefore {
			t.Fatalf("Extract (err %v) changed the sandbox outside the targets:\n%s\nwant:\n%s", err, after, sb.outsideBefore)
		}
		if err != nil {
			for i, target := range targets {
				if after := listTree(t, target, nil, nil); after != sb.targetsBefore[i] {
					t.Fatalf("Extract failed (%v) but changed target %d:\n%s\nwant:\n%s", err, i, after, sb.targetsBefore[i])
				}
			}
			sb.dirty = false
			return
		}
		if tarBytes == nil { // raw zstd that Extract accepted: decode it here too
			tarBytes = zstdDecoded(t, stream)
		}
		want := expectedTrees(t, tarBytes, len(targets))
		for i, target := range targets {
			if want[i] == nil {
				if after := listTree(t, target, nil, nil); after != sb.targetsBefore[i] {
					t.Fatalf("target %d has no entry in the archive but changed:\n%s", i, after)
				}
				continue
			}
			if got := actualTree(t, target); !equalTrees(got, want[i]) {
				t.Fatalf("target %d is not the archive's content:\n%v\nwant:\n%v", i, got, want[i])
			}
		}
	})
}

// fuzzSeed is one seed input.
type fuzzSeed struct {
	data []byte
	mode byte
}

// fuzzSeeds returns valid archives, the hostile archives of hostile_test.go
// and damaged archives, each in the modes that fit it.
func fuzzSeeds(f *testing.F) []fuzzSeed {
	var seeds []fuzzSeed
	add := func(raw []byte, modes ...byte) {
		for _, m := range modes {
			seeds = append(seeds, fuzzSeed{raw, m})
		}
	}

	// Valid archives made by Write, kept small (short inputs minimize
	// quickly): a directory, a file with an odd name, a hard link, a
	// symlink; and a single file. Whole-second mtimes need no PAX records.
	tmp := f.TempDir()
	src := filepath.Join(tmp, "src")
	mtime := time.Unix(1_600_000_000, 0)
	writeFile(f, filepath.Join(src, "a/caf\xe9 b\\c"), "odd", 0o600, mtime)
	writeFile(f, filepath.Join(src, "h1"), "linked", 0o644, mtime)
	if err := os.Link(filepath.Join(src, "h1"), filepath.Join(src, "h2")); err != nil {
		f.Fatal(err)
	}
	mustSymlink(f, "../outside", filepath.Join(src, "up"))
	for _, d := range []string{filepath.Join(src, "a"), src} {
		if err := os.Chtimes(d, mtime, mtime); err != nil {
			f.Fatal(err)
		}
	}
	single := filepath.Join(tmp, "single")
	writeFile(f, single, "single", 0o644, mtime)
	valid, _ := mustWrite(f, []string{src, single}, None, 0, nil)
	add(valid, fuzzNone, fuzzZstd, fuzzGzip)
	zstdValid, _ := mustWrite(f, []string{src}, Zstd, 0, nil)
	add(zstdValid, fuzzRawZstd)
	// The same archive as several frames, as Write cuts a larger one.
	var frames bytes.Buffer
	fw, err := newFrameWriter(&frames, 0, 1000)
	if err != nil {
		f.Fatal(err)
	}
	plain, _ := mustWrite(f, []string{src}, None, 0, nil)
	if _, err := fw.Write(plain); err != nil {
		f.Fatal(err)
	}
	if err := fw.Close(); err != nil {
		f.Fatal(err)
	}
	add(frames.Bytes(), fuzzRawZstd)
	add(frames.Bytes()[:len(frames.Bytes())/2], fuzzRawZstd)
	// The same archive with runs stored raw (no frame checksum), between
	// compressed frames, as Write stores random data.
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(true))
	if err != nil {
		f.Fatal(err)
	}
	defer enc.Close()
	stored := appendRawFrame(nil, plain[:1000])
	stored = enc.EncodeAll(plain[1000:2000], stored)
	add(appendRawFrame(stored, plain[2000:]), fuzzRawZstd)
	add(unsealedEntries(f, []tarEntry{
		{name: "0/", typ: tar.TypeDir, mode: 0o755},
		{name: "0/d/f", typ: tar.TypeReg, body: "implicit parent"},
		{name: "0/s", typ: tar.TypeSymlink, link: "d/f"},
		{name: "0/h", typ: tar.TypeLink, link: "0/d/f"},
		{name: "1", typ: tar.TypeReg, body: "a file target"},
	}), fuzzNone|fuzzSeal, fuzzZstd|fuzzSeal)

	// Damaged: truncated, a flipped byte, garbage after the end, no trailer.
	flipped := bytes.Clone(valid)
	flipped[len(flipped)/2] ^= 0x55
	add(valid[:len(valid)/2], fuzzNone)
	add(flipped, fuzzNone)
	add(append(bytes.Clone(valid), "garbage"...), fuzzNone)
	add(unsealedTar(f, []tarEntry{{name: "0", typ: tar.TypeReg, body: "x"}}), fuzzNone)
	add(zstdValid[:len(zstdValid)-4], fuzzRawZstd)

	// Hostile: each case, sealed so that only its hostility stops it.
	for _, hc := range hostileCases() {
		entries := make([]tarEntry, len(hc.entries))
		for i, e := range hc.entries {
			e.name = replaceOutside(e.name, "/nonexistent/outside")
			e.link = replaceOutside(e.link, "../outside")
			entries[i] = e
		}
		if len(entries) > 20 { // the "many valid" cases: keep the seeds small
			entries = entries[len(entries)-3:]
		}
		add(unsealedEntries(f, entries), fuzzNone|fuzzSeal)
	}
	return seeds
}

// unsealedEntries returns the tar blocks of entries, without trailer or
// end-of-archive marker: what fuzzSeal completes.
func unsealedEntries(t testing.TB, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	writeEntries(t, tw, entries)
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// fuzzStream turns the fuzz input into what Extract reads: the compression,
// the stream, and the tar bytes inside it (nil for fuzzRawZstd).
func fuzzStream(t *testing.T, enc *zstd.Encoder, data []byte, mode byte) (Compression, []byte, []byte) {
	t.Helper()
	if mode&3 == fuzzRawZstd {
		return Zstd, data, nil
	}
	tarBytes := data
	if mode&fuzzSeal != 0 {
		tarBytes = seal(t, data)
	}
	switch mode & 3 {
	case fuzzZstd:
		return Zstd, enc.EncodeAll(tarBytes, nil), tarBytes
	case fuzzGzip:
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		if _, err := zw.Write(tarBytes); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return Gzip, buf.Bytes(), tarBytes
	}
	return None, tarBytes, tarBytes
}

// seal pads entries to a whole block and appends a valid checksum trailer
// and the end-of-archive marker.
func seal(t *testing.T, entries []byte) []byte {
	t.Helper()
	padded := append(bytes.Clone(entries), make([]byte, (blockSize-len(entries)%blockSize)%blockSize)...)
	var buf bytes.Buffer
	buf.Write(padded)
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(trailerHeader(crc32.Checksum(padded, crcTable()))); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// zstdDecoded decodes a zstd stream that Extract accepted.
func zstdDecoded(t *testing.T, stream []byte) []byte {
	t.Helper()
	dec, err := zstd.NewReader(bytes.NewReader(stream), zstd.WithDecoderMaxMemory(zstdMaxMemory))
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	out, err := io.ReadAll(dec)
	if err != nil {
		t.Fatalf("Extract accepted a zstd stream that does not decode: %v", err)
	}
	return out
}

// fuzzSandbox is where FuzzExtract restores: root/parent/t0 (a marker
// tree) and root/parent/t1 (missing) are the targets; root/parent/outside
// and root/neighbour must never change.
type fuzzSandbox struct {
	root          string
	dirty         bool // the current input may have changed the sandbox
	outsideBefore string
	targetsBefore []string
}

func (sb *fuzzSandbox) targets() []string {
	parent := filepath.Join(sb.root, "parent")
	return []string{filepath.Join(parent, "t0"), filepath.Join(parent, "t1")}
}

// remakeIfDirty makes the sandbox again if the current input may have
// changed it.
func (sb *fuzzSandbox) remakeIfDirty(t testing.TB) {
	t.Helper()
	if sb.dirty {
		sb.make(t)
	}
}

// make (re)creates the sandbox and records its listings.
func (sb *fuzzSandbox) make(t testing.TB) {
	t.Helper()
	if err := removeTree(sb.root); err != nil {
		t.Fatal(err)
	}
	mtime := time.Unix(1_400_000_000, 0)
	parent := filepath.Join(sb.root, "parent")
	writeFile(t, filepath.Join(parent, "t0", "marker"), "marker", 0o644, mtime)
	writeFile(t, filepath.Join(parent, "t0", "sub", "file"), "sub file", 0o600, mtime)
	mustSymlink(t, "../outside", filepath.Join(parent, "t0", "escape"))
	writeFile(t, filepath.Join(parent, "outside", "file"), "outside", 0o644, mtime)
	writeFile(t, filepath.Join(sb.root, "neighbour"), "neighbour", 0o644, mtime)
	sb.outsideBefore = sb.outsideListing(t)
	sb.targetsBefore = nil
	for _, target := range sb.targets() {
		sb.targetsBefore = append(sb.targetsBefore, listTree(t, target, nil, nil))
	}
	sb.dirty = false
}

// outsideListing lists the sandbox but the targets; the mtimes of root and
// parent are left out (creating and removing staging directories changes
// them).
func (sb *fuzzSandbox) outsideListing(t testing.TB) string {
	t.Helper()
	return listTree(t, sb.root, map[string]bool{"parent/t0": true, "parent/t1": true}, map[string]bool{".": true, "parent": true})
}

// node is one entry of a tree: 'd', 'f' (with its content) or 'l' (with its
// target).
type node struct {
	kind byte
	data string
}

// expectedTrees reads a tar stream that Extract accepted and returns, for
// each target index, the tree it must now hold (relative slash path to
// node), or nil if the archive has no entry for it. It follows the package
// rules: global headers, devices and FIFOs create nothing; names with a
// component longer than NAME_MAX are skipped with everything below them and
// the hard links to them; missing parents are directories.
func expectedTrees(t *testing.T, tarBytes []byte, ntargets int) []map[string]node {
	t.Helper()
	trees := make([]map[string]node, ntargets)
	skipped := map[string]bool{}
	tr := tar.NewReader(bytes.NewReader(tarBytes))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return trees
		}
		if err != nil {
			t.Fatalf("Extract accepted a stream archive/tar cannot read: %v", err)
		}
		var n node
		switch hdr.Typeflag {
		case tar.TypeDir:
			n = node{kind: 'd'}
		case tar.TypeReg:
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			n = node{kind: 'f', data: string(b)}
		case tar.TypeSymlink:
			n = node{kind: 'l', data: hdr.Linkname}
		case tar.TypeLink:
			n = node{kind: 'f'} // content filled in below
		default:
			continue // global headers, devices, FIFOs
		}
		name := strings.TrimSuffix(hdr.Name, "/")
		top, rel, _ := strings.Cut(name, "/")
		index, err := strconv.Atoi(top)
		if err != nil || index < 0 || index >= ntargets {
			t.Fatalf("Extract accepted entry %q", hdr.Name)
		}
		if tooLong(rel) || (hdr.Typeflag == tar.TypeLink && skipped[hdr.Linkname]) {
			skipped[name] = true
			continue
		}
		if trees[index] == nil {
			trees[index] = map[string]node{}
		}
		if hdr.Typeflag == tar.TypeLink {
			_, linkRel, _ := strings.Cut(hdr.Linkname, "/")
			n.data = trees[index][linkRel].data
		}
		trees[index][rel] = n
		for p := path.Dir(rel); rel != "" && p != "."; p = path.Dir(p) {
			if _, ok := trees[index][p]; !ok {
				trees[index][p] = node{kind: 'd'}
			}
		}
		if rel != "" {
			if _, ok := trees[index][""]; !ok {
				trees[index][""] = node{kind: 'd'}
			}
		}
	}
}

// tooLong reports whether a component of rel is longer than NAME_MAX.
func tooLong(rel string) bool {
	for _, c := range strings.Split(rel, "/") {
		if len(c) > 255 {
			return true
		}
	}
	return false
}

// actualTree describes the tree at target like expectedTrees does. It makes
// directories and files readable first: the archive may have made them
// unreadable, and modes are not compared.
func actualTree(t *testing.T, target string) map[string]node {
	t.Helper()
	makeDirsWritable(target)
	tree := map[string]node{}
	err := filepath.WalkDir(target, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(target, p)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			rel = ""
		}
		switch {
		case d.IsDir():
			tree[rel] = node{kind: 'd'}
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			tree[rel] = node{kind: 'l', data: l}
		case d.Type().IsRegular():
			if err := os.Chmod(p, 0o600); err != nil {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			tree[rel] = node{kind: 'f', data: string(b)}
		default:
			tree[rel] = node{kind: '?'}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func equalTrees(a, b map[string]node) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// formatting formats every message and drops it: a bad format argument still shows.
type formatting struct{}

func (formatting) Infof(format string, args ...any) { _ = fmt.Sprintf(format, args...) }
func (formatting) Warnf(format string, args ...any) { _ = fmt.Sprintf(format, args...) }
