// Package fspath compares file system paths lexically. The cache's checks that a target is not
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

// Forms lists the names a check must compare for p: p cleaned and, when it exists and the two
// differ, p with its symlinks resolved. A link to the checkout is the checkout.
func Forms(p string) []string {
	c := filepath.Clean(p)
	if real, err := filepath.EvalSymlinks(p); err == nil && real != c {
		return []string{c, real}
	}
	return []string{c}
}
