package cache

// Why a file: a save's stamp for warm restores (docs/design.md#warm-restores) is the digest of
// the tree as its archive read it, built from what the archive stored instead of a walk of its own.

import (
	"crypto/sha256"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// treeRecorder is an archive.Observer that builds the tree of the paths an archive stores,
// digest included, exactly as digestTree computes it: each entry described by the lstat (or
// fstat of the open file) the archive took before reading it. So the tree is what a walk would
// have found had it met every entry at the moment the archive did. It is used by the one
// goroutine that writes the archive.
type treeRecorder struct {
	uid   uint32
	roots hash.Hash // the records of the paths themselves, in order
	open  []dirHash // the directories being stored, outermost first
	dirs  []dirSum  // the directories stored
	t     tree
	err   error // why the tree is not what a walk would find; the first reason counts
}

// dirHash is the digest, so far, of the entries of the directory rel.
type dirHash struct {
	rel string
	h   hash.Hash
}

func newTreeRecorder(paths int) *treeRecorder {
	return &treeRecorder{uid: uint32(os.Getuid()), roots: sha256.New(), t: tree{roots: make([]rootID, paths)}}
}

// Stored records an entry the archive stored; entries come in the archive's order: each
// directory before its entries, the entries of a directory in name order (digestTree's order).
func (r *treeRecorder) Stored(name string, info fs.FileInfo, link string) {
	if r.err != nil {
		return
	}
	m, ok := metaOfInfo(info)
	if !ok {
		r.err = errNoDigest
		return
	}
	cut := strings.LastIndexByte(name, '/')
	rec := appendRecord(nil, name[cut+1:], &m, []byte(link))
	if cut < 0 { // one of the paths
		i, err := strconv.Atoi(name)
		if err != nil || i < 0 || i >= len(r.t.roots) {
			r.err = fmt.Errorf("the archive stored %q, not one of the paths", name)
			return
		}
		r.t.roots[i] = rootID{dev: m.dev, ino: m.ino, exists: true}
		r.roots.Write(rec)
	} else {
		parent := name[:cut]
		for len(r.open) > 0 && r.open[len(r.open)-1].rel != parent {
			r.closeDir()
		}
		if len(r.open) == 0 {
			r.err = fmt.Errorf("the archive stored %q outside the directory it was storing", name)
			return
		}
		r.open[len(r.open)-1].h.Write(rec)
	}
	r.t.addEntry(m, r.uid)
	if m.mode&modeType == modeDir {
		r.open = append(r.open, dirHash{rel: name, h: sha256.New()})
	}
}

// Missing records a path that does not exist.
func (r *treeRecorder) Missing(name string) {
	r.roots.Write(appendRecord(nil, name, nil, nil))
}

// Passed: the archive left out an entry a walk would record, so no tree is recorded.
func (r *treeRecorder) Passed(name string) {
	if r.err == nil {
		r.err = fmt.Errorf("the archive left out %s (gone while it was read, not a file, directory or symlink, or a killed restore's leftover)", name)
	}
}

// closeDir ends the innermost directory being stored.
func (r *treeRecorder) closeDir() {
	d := r.open[len(r.open)-1]
	r.open = r.open[:len(r.open)-1]
	s := dirSum{rel: d.rel}
	copy(s.sum[:], d.h.Sum(nil))
	r.dirs = append(r.dirs, s)
}

// tree returns the tree the archive stored, once it has been written.
func (r *treeRecorder) tree() (tree, error) {
	if r.err != nil {
		return tree{}, r.err
	}
	for len(r.open) > 0 {
		r.closeDir()
	}
	t := r.t
	t.digest = treeDigest(r.roots, r.dirs)
	return t, nil
}
