package archive

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// readOnlyTree makes a tree of read-only directories (like Go's module
// cache) under dir, with a symlink to outside, a read-only directory that
// must not be made writable through the link.
func readOnlyTree(t *testing.T, dir, outside string) {
	t.Helper()
	writeFile(t, filepath.Join(dir, "a/b/file"), "x", 0o444, time.Now())
	writeFile(t, filepath.Join(dir, "closed/file"), "x", 0o444, time.Now())
	writeFile(t, filepath.Join(outside, "precious"), "x", 0o444, time.Now())
	mustSymlink(t, outside, filepath.Join(dir, "a/link"))
	for rel, mode := range map[string]fs.FileMode{"a/b": 0o555, "a": 0o555, "closed": 0o000, ".": 0o555} {
		if err := os.Chmod(filepath.Join(dir, rel), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(outside, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(outside, 0o755) })
}

func TestMakeDirsWritable(t *testing.T) {
	tmp := tempDir(t)
	dir, outside := filepath.Join(tmp, "tree"), filepath.Join(tmp, "outside")
	readOnlyTree(t, dir, outside)
	makeDirsWritable(dir)
	for _, rel := range []string{".", "a", "a/b", "closed"} {
		info, err := os.Stat(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm()&0o700 != 0o700 {
			t.Errorf("%s: mode %v, want u+rwx", rel, info.Mode())
		}
	}
	info, err := os.Stat(outside)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o555 {
		t.Errorf("followed the symlink: outside is now %v", info.Mode())
	}
}

func TestRemoveTree(t *testing.T) {
	tmp := tempDir(t)
	dir, outside := filepath.Join(tmp, "tree"), filepath.Join(tmp, "outside")
	readOnlyTree(t, dir, outside)
	if err := removeTree(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Errorf("tree still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "precious")); err != nil {
		t.Errorf("symlink followed: %v", err)
	}
	if err := removeTree(dir); err != nil {
		t.Errorf("removing a missing tree: %v", err)
	}
}

// TestSwapUndo: when a later target cannot be swapped, the targets already
// swapped get their previous content back.
func TestSwapUndo(t *testing.T) {
	parent := tempDir(t)
	one, two := filepath.Join(parent, "one"), filepath.Join(parent, "two")
	writeFile(t, filepath.Join(one, "old.txt"), "old one", 0o644, time.Unix(1_000_000_000, 0))
	writeFile(t, filepath.Join(two, "old.txt"), "old two", 0o644, time.Unix(1_000_000_000, 0))
	before := snapshot(t, parent)

	s1, err := newStagedTarget(one)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(s1.root, "new.txt"), "new", 0o644, time.Now())
	s2, err := newStagedTarget(two) // no root: its swap fails
	if err != nil {
		t.Fatal(err)
	}
	x := &extraction{targets: []string{one, two}, staged: []*stagedTarget{s1, s2}, warn: warnOrDiscard(nil)}
	assertSwapUndone(t, x, parent, before)
}

// assertSwapUndone checks that x's swap fails (its last target has no
// content) and that after the undo and discard parent is as before.
func assertSwapUndone(t *testing.T, x *extraction, parent, before string) {
	t.Helper()
	if err := x.swapAll(); err == nil {
		t.Fatal("swapAll succeeded without content for the second target")
	}
	if err := x.discard(); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, parent); after != before {
		t.Errorf("not undone:\n%s\nwant:\n%s", after, before)
	}
	assertNoLeftovers(t, parent)
}

// TestNameStem: helper names stay within NAME_MAX for any target name, are
// recognised by isLeftover, and a long name's stem keeps whole UTF-8
// characters.
func TestNameStem(t *testing.T) {
	for _, base := range []string{
		"x", ".npm", strings.Repeat("x", 100), strings.Repeat("x", 101), strings.Repeat("x", 255),
		strings.Repeat("é", 127), "a" + strings.Repeat("é", 127), strings.Repeat("\xe9", 255),
	} {
		stem := nameStem(base)
		if stem != nameStem(base) {
			t.Errorf("%q: stem not deterministic", base)
		}
		if utf8.ValidString(base) && !utf8.ValidString(stem) {
			t.Errorf("%q: stem %q is not UTF-8", base, stem)
		}
		if len(base) > maxStem && nameStem(base+"y") == stem {
			t.Errorf("%q: two long names share a stem", base)
		}
		for _, kind := range []string{kindStaging, kindTrash, kindOld} {
			n := leftoverName(stem, kind)
			if len(n) > 255 {
				t.Errorf("%q: %d-byte helper name", base, len(n))
			}
			if !isLeftover(n, stem) {
				t.Errorf("%q: %s not recognised", base, n)
			}
		}
		if n := lockName(stem); len(n) > 255 || isLeftover(n, stem) {
			t.Errorf("%q: lock name %s too long or taken for a leftover", base, n)
		}
	}
}

// TestSwapFallback: where names cannot be exchanged, two renames replace a
// directory and a file, the old contents are removed after; and a failed
// swap puts everything back.
func TestSwapFallback(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run(fmt.Sprintf("fail=%v", fail), func(t *testing.T) {
			parent := tempDir(t)
			dir, file := filepath.Join(parent, "dir"), filepath.Join(parent, "file")
			writeFile(t, filepath.Join(dir, "old.txt"), "old", 0o644, time.Unix(1_000_000_000, 0))
			writeFile(t, file, "old file", 0o644, time.Unix(1_000_000_000, 0))
			before := snapshot(t, parent)
			var staged []*stagedTarget
			for _, target := range []string{dir, file} {
				s, err := newStagedTarget(target)
				if err != nil {
					t.Fatal(err)
				}
				s.noExchange = true
				staged = append(staged, s)
			}
			writeFile(t, filepath.Join(staged[0].root, "new.txt"), "new", 0o644, time.Now())
			if !fail {
				writeFile(t, staged[1].root, "new file", 0o644, time.Now())
			}
			x := &extraction{targets: []string{dir, file}, staged: staged, warn: warnOrDiscard(nil)}
			err := x.swapAll()
			if fail {
				if err == nil {
					t.Fatal("swapAll succeeded without content for the second target")
				}
				if err := x.discard(); err != nil {
					t.Fatal(err)
				}
				if after := snapshot(t, parent); after != before {
					t.Errorf("not undone:\n%s\nwant:\n%s", after, before)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				x.finish()
				for p, want := range map[string]string{filepath.Join(dir, "new.txt"): "new", file: "new file"} {
					if got, err := os.ReadFile(p); err != nil || string(got) != want {
						t.Errorf("%s: %q, %v; want %q", p, got, err, want)
					}
				}
				if _, err := os.Lstat(filepath.Join(dir, "old.txt")); err == nil {
					t.Error("the old content is still in the directory")
				}
			}
			assertNoLeftovers(t, parent)
		})
	}
}
