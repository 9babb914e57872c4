package inventory

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cachekey"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/s3"
)

// Store is the bucket as this package uses it; *s3.Store implements it.
type Store interface {
	List(ctx context.Context, prefix string, fn func([]s3.Entry) error) error
	Folders(ctx context.Context, prefix string) ([]string, []s3.Entry, error)
	DeleteKeys(ctx context.Context, keys []string) error
	Uploads(ctx context.Context, prefix string) ([]s3.Upload, error)
	AbortUpload(ctx context.Context, u s3.Upload) error
}

// Unknown is the level of an object below the prefix whose name is not a cache's.
const Unknown = "unknown"

// Cache is one object below the prefix: a cache archive, or an object of unknown kind (Level
// Unknown, only Key, Size and Saved set). The JSON names are stable: scripts read them.
type Cache struct {
	Key       string    `json:"key"`
	Org       string    `json:"org,omitempty"`
	Pipeline  string    `json:"pipeline,omitempty"` // "" for the shared all level, which every pipeline shares
	Level     string    `json:"level"`              // file, step, branch, pipeline, all or unknown
	Branch    string    `json:"branch,omitempty"`   // the branch level's folder (a slug)
	Step      string    `json:"step,omitempty"`     // the step level's folder (a slug)
	Family    string    `json:"family,omitempty"`   // the file level's family folder
	Namespace string    `json:"namespace,omitempty"`
	Size      int64     `json:"size"`
	Saved     time.Time `json:"saved_at"`           // LastModified
	Used      time.Time `json:"last_used,omitzero"` // the newest last-use marker; zero: never recorded

	markers []marker // its last-use markers, oldest first
}

// LastUse is when the cache was last restored, else when it was saved: what gc orders by.
func (c Cache) LastUse() time.Time {
	if c.Used.After(c.Saved) {
		return c.Used
	}
	return c.Saved
}

// Known reports whether the object is a cache archive.
func (c Cache) Known() bool { return c.Level != Unknown }

// marker is one last-use marker object.
type marker struct {
	key      string
	modified time.Time
}

// Inventory is what one listing of the prefix found.
type Inventory struct {
	Prefix string  // the key prefix, without slashes around it
	Caches []Cache // cache archives and unknown objects, in key order
	// orphans are the markers of objects the listing did not find: their caches are gone.
	orphans []marker
}

// Load lists every object below prefix once (listAll: the pipelines' folders concurrently) and
// sorts it into caches, their last-use markers and unknown objects. The probe objects of conditional-writes,
// which live for seconds, are left out.
func Load(ctx context.Context, store Store, prefix string) (*Inventory, error) {
	prefix = strings.Trim(prefix, "/")
	root := ""
	if prefix != "" {
		root = prefix + "/"
	}
	entries, err := listAll(ctx, store, root)
	if err != nil {
		return nil, err
	}
	inv := &Inventory{Prefix: prefix}
	markers := map[string][]marker{}
	for _, e := range entries {
		if key, _, ok := cachekey.ParseUsedMarker(prefix, e.Key); ok {
			markers[key] = append(markers[key], marker{key: e.Key, modified: e.Modified})
			continue
		}
		if strings.HasPrefix(e.Key, root+".s3-cache-probe/") {
			continue
		}
		c := Parse(prefix, e.Key)
		c.Size, c.Saved = e.Size, e.Modified
		inv.Caches = append(inv.Caches, c)
	}
	for i := range inv.Caches {
		c := &inv.Caches[i]
		ms := markers[c.Key]
		delete(markers, c.Key)
		slices.SortFunc(ms, func(a, b marker) int { return a.modified.Compare(b.modified) })
		c.markers = ms
		if len(ms) > 0 {
			c.Used = ms[len(ms)-1].modified
		}
	}
	for _, ms := range markers {
		inv.orphans = append(inv.orphans, ms...)
	}
	slices.SortFunc(inv.orphans, func(a, b marker) int { return strings.Compare(a.key, b.key) })
	return inv, nil
}

// listConcurrency bounds the listings listAll runs at once.
const listConcurrency = 8

// listAll returns every object below root, in key order. One listing of the whole prefix would be
// a sequence of 1,000-key pages, each waiting for the last (and on a server that walks a
// filesystem, each walking up to where the last ended), so listAll first finds the folders of the
// pipelines (two levels down: organisation, pipeline; three in the marker folder), with a
// delimited listing of each level, then lists those folders concurrently.
func listAll(ctx context.Context, store Store, root string) ([]s3.Entry, error) {
	type folder struct {
		prefix string
		below  int // levels still to expand
	}
	var all, leaves []s3.Entry
	queue := []folder{{root, 2}}
	var leafPrefixes []string
	for len(queue) > 0 {
		f := queue[0]
		queue = queue[1:]
		if f.below == 0 {
			leafPrefixes = append(leafPrefixes, f.prefix)
			continue
		}
		folders, objects, err := store.Folders(ctx, f.prefix)
		if err != nil {
			return nil, err
		}
		all = append(all, objects...)
		for _, sub := range folders {
			below := f.below - 1
			if sub == root+cachekey.UsedFolder+"/" {
				below++ // markers mirror the caches' names one level deeper
			}
			queue = append(queue, folder{sub, below})
		}
	}
	var mu sync.Mutex
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(listConcurrency)
	for _, p := range leafPrefixes {
		g.Go(func() error {
			return store.List(ctx, p, func(page []s3.Entry) error {
				mu.Lock()
				defer mu.Unlock()
				leaves = append(leaves, page...)
				return nil
			})
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	all = append(all, leaves...)
	slices.SortFunc(all, func(a, b s3.Entry) int { return strings.Compare(a.Key, b.Key) })
	return all, nil
}

// Parse reads an object name back into what cachekey.For put into it (docs/design.md#keys):
//
//	<prefix>/<org>/<pipeline>/[ns/<namespace>/]file/<family>/<hash><ext>
//	<prefix>/<org>/<pipeline>/[ns/<namespace>/]step/<step>/<hash><ext>
//	<prefix>/<org>/<pipeline>/[ns/<namespace>/]branch/<branch>/<hash><ext>
//	<prefix>/<org>/<pipeline>/[ns/<namespace>/]pipeline/<hash><ext>
//	<prefix>/<org>/<pipeline>/ns/<namespace>/all/<hash><ext>
//	<prefix>/<org>/all/<hash><ext>
//
// A name of any other shape has Level Unknown. (A pipeline named "all" is no ambiguity: the shared
// all level has one segment fewer than any of a pipeline's.)
func Parse(prefix, key string) Cache {
	c := Cache{Key: key, Level: Unknown}
	rest := key
	if prefix = strings.Trim(prefix, "/"); prefix != "" {
		var ok bool
		if rest, ok = strings.CutPrefix(key, prefix+"/"); !ok {
			return c
		}
	}
	s := strings.Split(rest, "/")
	if len(s) < 3 || !archiveName(s[len(s)-1]) || slices.Contains(s, "") {
		return c
	}
	org, path := s[0], s[1:len(s)-1]
	if len(path) == 1 && path[0] == "all" {
		c.Org, c.Level = org, "all"
		return c
	}
	pipeline, path := path[0], path[1:]
	ns := ""
	if len(path) >= 3 && path[0] == "ns" {
		ns, path = path[1], path[2:]
	}
	switch {
	case len(path) == 1 && (path[0] == "pipeline" || path[0] == "all" && ns != ""):
		c.Level = path[0]
	case len(path) == 2 && path[0] == "file":
		c.Level, c.Family = "file", path[1]
	case len(path) == 2 && path[0] == "step":
		c.Level, c.Step = "step", path[1]
	case len(path) == 2 && path[0] == "branch":
		c.Level, c.Branch = "branch", path[1]
	default:
		return c
	}
	c.Org, c.Pipeline, c.Namespace = org, pipeline, ns
	return c
}

// archiveName reports whether name is a cache object's: 32 hex digits and an archive extension.
func archiveName(name string) bool {
	base, ext, ok := strings.Cut(name, ".")
	if !ok || len(base) != 32 || strings.Trim(base, "0123456789abcdef") != "" {
		return false
	}
	switch ext {
	case "tar", "tar.zst", "tar.gz":
		return true
	}
	return false
}
