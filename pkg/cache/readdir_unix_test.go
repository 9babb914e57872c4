//go:build linux || darwin

package cache

import (
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// readDir lists every entry but . and .., whatever the names and however many buffers the
// listing takes, and on Linux says which are directories.
func TestReadDir(t *testing.T) {
	dir := t.TempDir()
	want := map[string]bool{"sub": true, "file": false, "link": false, "\xff odd\tname": false, strings.Repeat("n", 255): false}
	for i := range 2000 { // ~60 KiB of entries: several getdents calls into a 16 KiB buffer
		want["many-"+strings.Repeat("x", i%40)+"-"+filepath.Base(t.Name())+string(rune('a'+i%26))+strconv.Itoa(i)] = false
	}
	for name, isDir := range want {
		p := filepath.Join(dir, name)
		switch {
		case isDir:
			mustT(t, os.Mkdir(p, 0o755))
		case name == "link":
			mustT(t, os.Symlink("sub", p))
		default:
			mustT(t, os.WriteFile(p, nil, 0o644))
		}
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	mustT(t, err)
	defer unix.Close(fd)
	ents, err := readDir(fd, make([]byte, 16<<10), nil)
	mustT(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.name)
		if isDir, ok := want[e.name]; ok && e.dir && !isDir {
			t.Errorf("%q listed as a directory", e.name)
		} else if runtime.GOOS == "linux" && ok && e.dir != isDir {
			t.Errorf("%q: dir = %v, want %v", e.name, e.dir, isDir)
		}
	}
	slices.Sort(names)
	wantNames := slices.Sorted(maps.Keys(want))
	if !slices.Equal(names, wantNames) {
		t.Fatalf("listed %d names, want %d (first listed %q)", len(names), len(wantNames), names[:min(3, len(names))])
	}
}
