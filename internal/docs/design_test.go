// Package docs holds tests of the repository's documentation.
package docs

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// root is the repository's top directory, seen from this package.
const root = "../.."

// designPointer matches a pointer into the design document, as code comments write it.
var designPointer = regexp.MustCompile(`docs/design\.md#([\p{L}\p{N}_-]+)`)

// localLink matches a Markdown link to a section of the same document: [text](#anchor).
var localLink = regexp.MustCompile(`\]\(#([^)\s]+)\)`)

// oldCitation is how comments cited the design before it was in the repository. It is spelled
// in two parts so that this file does not match itself.
var oldCitation = "DESIGN " + "§"

// pointerFiles reports whether the file at rel (slash-separated, from the root) may carry
// pointers to the design: Go and bash sources, the hooks, and the Markdown documentation.
func pointerFiles(rel string) bool {
	switch {
	case strings.HasPrefix(rel, "hooks/"):
		return true
	case strings.HasSuffix(rel, ".go"), strings.HasSuffix(rel, ".bash"), strings.HasSuffix(rel, ".md"):
		return true
	}
	return false
}

// TestDesignPointersResolve fails on a pointer docs/design.md#<anchor> in the repository whose
// anchor is not a heading of docs/design.md, and on any remaining citation of the old design
// sections, so that the code and the design cannot drift apart silently.
func TestDesignPointersResolve(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(root, "docs", "design.md"))
	if err != nil {
		t.Fatalf("docs/design.md: %v", err)
	}
	anchors := headingAnchors(string(doc))
	if len(anchors) < 10 {
		t.Fatalf("docs/design.md has %d headings (%v), want its sections", len(anchors), anchors)
	}
	for _, m := range localLink.FindAllStringSubmatch(string(doc), -1) {
		if !anchors[m[1]] {
			t.Errorf("docs/design.md links to #%s, which is not one of its headings", m[1])
		}
	}

	pointers := 0
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			switch d.Name() {
			case ".git", "node_modules", "dist", "testdata":
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !pointerFiles(rel) {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for line := 1; sc.Scan(); line++ {
			text := sc.Text()
			if strings.Contains(text, oldCitation) {
				t.Errorf("%s:%d cites %q, which no longer exists: point at a section of docs/design.md (docs/design.md#<anchor>)", rel, line, oldCitation)
			}
			for _, m := range designPointer.FindAllStringSubmatch(text, -1) {
				pointers++
				if !anchors[m[1]] {
					t.Errorf("%s:%d points at docs/design.md#%s, which is not a heading of docs/design.md; its anchors are %v", rel, line, m[1], sortedKeys(anchors))
				}
			}
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if pointers == 0 {
		t.Fatal("found no pointer to docs/design.md in the repository: the walk looked in the wrong place")
	}
}

// headingAnchors returns the anchors GitHub gives the headings of a Markdown document, outside
// fenced code blocks.
func headingAnchors(doc string) map[string]bool {
	anchors := map[string]bool{}
	seen := map[string]int{}
	fenced := false
	for line := range strings.SplitSeq(doc, "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			continue
		}
		level := len(line) - len(strings.TrimLeft(line, "#"))
		if level == 0 || level > 6 || !strings.HasPrefix(line[level:], " ") {
			continue
		}
		a := anchor(line[level:])
		if n := seen[a]; n > 0 { // GitHub numbers repeated headings: a, a-1, a-2, …
			anchors[a+"-"+strconv.Itoa(n)] = true
		} else {
			anchors[a] = true
		}
		seen[a]++
	}
	return anchors
}

// anchor is GitHub's anchor for a heading's text: lower case, punctuation dropped (letters,
// digits, spaces, "-" and "_" kept), each space a "-".
func anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-', r == '_', unicode.IsLetter(r), unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestAnchor(t *testing.T) {
	for _, tc := range []struct{ heading, want string }{
		{"Overview and layout", "overview-and-layout"},
		{" Shim: resolution and trust ", "shim-resolution-and-trust"},
		{"Conditional writes and the probe", "conditional-writes-and-the-probe"},
		{"The `force` key (v2)", "the-force-key-v2"},
		{"Save -- then restore", "save----then-restore"},
		{"snake_case and Ünïcode", "snake_case-and-ünïcode"},
	} {
		if got := anchor(tc.heading); got != tc.want {
			t.Errorf("anchor(%q) = %q, want %q", tc.heading, got, tc.want)
		}
	}
	got := sortedKeys(headingAnchors("# A\n## B\n```\n# not a heading\n```\n## B\n#nospace\n"))
	if want := []string{"a", "b", "b-1"}; !slices.Equal(got, want) {
		t.Errorf("headingAnchors = %v, want %v", got, want)
	}
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
