package archive

import (
	"fmt"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// entryName is an archive entry name that passed parseEntryName.
type entryName struct {
	name  string // canonical name without trailing slash: "3" or "3/a/b"
	index int    // the target the entry belongs to (3)
	rel   string // slash-separated path inside the target ("a/b"), "" for the target itself
}

// parseEntryName checks an entry name from the archive, without touching the
// filesystem. isDir allows one trailing "/". A refusal wraps ErrUnsafe.
func parseEntryName(raw string, isDir bool, ntargets int) (entryName, error) {
	e, reason := checkName(raw, isDir, ntargets)
	if reason != "" {
		return entryName{}, unsafeEntry(raw, "%s", reason)
	}
	return e, nil
}

// checkName checks an entry name (or a hard link's target name) and returns
// it parsed, or why it is refused as hostile. isDir allows one trailing "/".
//
// A valid name is relative, canonical (path.Clean returns it unchanged), has
// no ".." component and no NUL, and starts with a target index written as
// strconv.Itoa does ("3", not "03" or "+3") below ntargets. Any other byte is
// allowed, as it is in a Linux file name: invalid UTF-8, newlines,
// backslashes. The rules do not depend on the operating system; whether this
// system can hold the name is unrepresentable's business.
func checkName(raw string, isDir bool, ntargets int) (e entryName, reason string) {
	name := raw
	if isDir {
		name = strings.TrimSuffix(name, "/")
	}
	switch {
	case name == "":
		return entryName{}, "empty name"
	case strings.ContainsRune(name, 0):
		return entryName{}, "name contains a NUL byte"
	case strings.HasPrefix(name, "/"):
		return entryName{}, "absolute name"
	case hasVolumeName(name):
		return entryName{}, "name starts with a volume name"
	case hasDotDot(name):
		return entryName{}, `name contains a ".." component`
	case path.Clean(name) != name:
		return entryName{}, fmt.Sprintf("name is not canonical (clean form is %q)", path.Clean(name))
	}

	top, rel, _ := strings.Cut(name, "/")
	index, err := strconv.Atoi(top)
	if err != nil || strconv.Itoa(index) != top || index < 0 || index >= ntargets {
		if ntargets == 0 {
			return entryName{}, "the archive has entries but there is no target to restore them to"
		}
		return entryName{}, fmt.Sprintf("name does not start with a target index from 0 to %d", ntargets-1)
	}
	return entryName{name: name, index: index, rel: rel}, ""
}

// unrepresentable returns the shortest leading part of e's name that this
// system cannot hold as a file name (a name longer than NAME_MAX, invalid
// UTF-8 on macOS, a reserved name or a backslash on Windows), and why; or ""
// if the whole name can be created. Such an entry, and everything below
// that part, is skipped: the archive is fine, this system just cannot hold it.
func unrepresentable(e entryName) (prefix string, reason error) {
	if e.rel == "" {
		return "", nil // the target itself: its path comes from the configuration
	}
	end := len(e.name) - len(e.rel) - 1 // the "/" after the index
	for _, component := range strings.Split(e.rel, "/") {
		end += 1 + len(component)
		if err := checkComponent(component); err != nil {
			return e.name[:end], err
		}
	}
	return "", nil
}

// localize returns the local form of rel, a path inside a target whose entry
// passed checkName and unrepresentable.
func localize(rel string) (string, error) {
	for _, component := range strings.Split(rel, "/") {
		if err := checkComponent(component); err != nil {
			return "", fmt.Errorf("%q: %w", rel, err)
		}
	}
	return filepath.FromSlash(rel), nil
}

// hasDotDot reports whether the slash-separated name has a ".." component.
func hasDotDot(name string) bool {
	return name == ".." ||
		strings.HasPrefix(name, "../") ||
		strings.HasSuffix(name, "/..") ||
		strings.Contains(name, "/../")
}

// hasVolumeName reports whether name starts with a Windows volume name such
// as "C:" (checked on every OS: an archive must not carry one).
func hasVolumeName(name string) bool {
	return filepath.VolumeName(name) != "" || (len(name) >= 2 && name[1] == ':')
}

// relOf returns the path inside target index of the canonical name, which
// must belong to that index: relOf(0, "0/a/b") is "a/b", relOf(0, "0") is "".
func relOf(index int, name string) string {
	top := strconv.Itoa(index)
	return strings.TrimPrefix(strings.TrimPrefix(name, top), "/")
}
