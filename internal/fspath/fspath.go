// Package fspath compares file system paths, lexically and with symlinks resolved. The cache's checks that a target is not
// the checkout, not inside another target, and so on, all reduce to "is this path at or below
// that one"; keeping that one question here means every check answers it the same way (a
// string prefix test gets "/" and "/a" vs "/ab" wrong).
package fspath

import "path/filepath"

// Within reports whether p is root or lies below it. Both are cleaned first; a relative path is
// only ever within another relative path. Symlinks are not followed: callers that care compare
// filepath.EvalSymlinks results as well.
func Within(root, p string) bool {
	rel, err := filepath.Rel(filepath.Clean(root), filepath.Clean(p))
	return err == nil && filepath.IsLocal(rel)
}

// Overlap reports whether a and b are the same path or one lies below the other: two such
// targets cannot be replaced independently of each other.
func Overlap(a, b string) bool {
	return Within(a, b) || Within(b, a)
}

// Forms lists the names a check must compare for p: p cleaned and, when the two differ, p with
// the symlinks of its longest existing ancestor resolved. A link to the checkout is the checkout,
// and so is a path below such a link that does not exist yet (a cache path before its first
// restore).
func Forms(p string) []string {
	c := filepath.Clean(p)
	if real := resolve(c); real != c {
		return []string{c, real}
	}
	return []string{c}
}

// resolve is EvalSymlinks of the longest existing ancestor of the clean path p, with the rest of
// p joined back on; p itself when nothing of it resolves.
func resolve(p string) string {
	rest := ""
	for dir := p; ; dir = filepath.Dir(dir) {
		if real, err := filepath.EvalSymlinks(dir); err == nil {
			return filepath.Join(real, rest)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return p
		}
		rest = filepath.Join(filepath.Base(dir), rest)
	}
}

// OverlapAnyForm reports whether any form of a (see Forms) overlaps any form of b: two paths that
// reach one directory through a symlink cannot be replaced independently either.
func OverlapAnyForm(a, b string) bool {
	for _, fa := range Forms(a) {
		for _, fb := range Forms(b) {
			if Overlap(fa, fb) {
				return true
			}
		}
	}
	return false
}
