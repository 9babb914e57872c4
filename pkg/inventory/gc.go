package inventory

// Why a file: what s3-cache gc deletes, in which order, and how.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/buildkite"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/s3"
)

// Defaults of GCOptions.
const (
	DefaultKeepRecent = time.Hour
	// StaleUpload is the age past which gc aborts an incomplete multipart upload: no save takes
	// a day, so its job is dead.
	StaleUpload = 24 * time.Hour
)

// GCOptions say what gc deletes.
type GCOptions struct {
	MaxSize    int64         // delete the least recently used caches until they hold at most this (0: no limit)
	UnusedFor  time.Duration // delete every cache not used for this long (0: no limit)
	KeepRecent time.Duration // never delete a cache used (or saved) this recently
	DryRun     bool          // print the plan, delete nothing
	Now        func() time.Time
}

// Deletion is one cache gc deletes, and why.
type Deletion struct {
	Cache
	Reason string // "unused for …" or "over max-size"
}

// Plan is what gc deletes, computed from one inventory before anything is deleted.
type Plan struct {
	Caches  []Deletion  // least recently used first
	Markers []string    // last-use markers of caches that are gone, or older than a cache's newest
	Uploads []s3.Upload // incomplete multipart uploads initiated over StaleUpload ago
	Kept    int         // caches kept
	// Before and After are the bytes of the caches before and after the plan; Freed the difference.
	Before, After, Freed int64
	Unknown              int // objects below the prefix that are not caches: never deleted, not counted
}

// PlanGC decides, from inv and the incomplete uploads, what gc deletes (docs/design.md#last-use-tracking-and-gc):
// caches in order of last use (the newest marker, else the save), oldest first, as long as one is
// unused for UnusedFor or the caches hold more than MaxSize; never one used within KeepRecent.
func PlanGC(inv *Inventory, uploads []s3.Upload, o GCOptions) Plan {
	now := o.Now()
	recent := now.Add(-o.KeepRecent)
	var p Plan
	var caches []Cache
	for _, c := range inv.Caches {
		if !c.Known() {
			p.Unknown++
			continue
		}
		caches = append(caches, c)
		p.Before += c.Size
	}
	Sort(caches, "used")
	size := p.Before
	gone := map[string]bool{}
	for _, c := range caches {
		reason := ""
		switch {
		case c.LastUse().After(recent):
			// Used within keep-recent: kept, whatever the budget.
		case o.UnusedFor > 0 && c.LastUse().Before(now.Add(-o.UnusedFor)):
			reason = "unused for over " + Age(o.UnusedFor)
		case o.MaxSize > 0 && size > o.MaxSize:
			reason = "over max-size " + buildkite.Bytes(o.MaxSize)
		}
		if reason == "" {
			p.Kept++
			// All but its newest marker: that one says all the others do.
			for _, m := range c.markers[:max(len(c.markers)-1, 0)] {
				p.Markers = append(p.Markers, m.key)
			}
			continue
		}
		p.Caches = append(p.Caches, Deletion{Cache: c, Reason: reason})
		size -= c.Size
		gone[c.Key] = true
		for _, m := range c.markers {
			p.Markers = append(p.Markers, m.key)
		}
	}
	for _, m := range inv.orphans {
		// A marker written in the last moments may belong to a cache saved after the listing
		// passed its name: keep it until keep-recent has passed.
		if !m.modified.After(recent) {
			p.Markers = append(p.Markers, m.key)
		}
	}
	slices.Sort(p.Markers)
	for _, u := range uploads {
		if u.Initiated.Before(now.Add(-StaleUpload)) {
			p.Uploads = append(p.Uploads, u)
		}
	}
	p.After, p.Freed = size, p.Before-size
	return p
}

// Write prints the plan: one line per deletion and abort, then a summary. In a dry run the verbs
// say "would".
func (p Plan) Write(w io.Writer, dryRun bool) {
	del, abort := "delete", "abort"
	if dryRun {
		del, abort = "would delete", "would abort"
	}
	for _, d := range p.Caches {
		fmt.Fprintf(w, "%s %s (%s, saved %s, last used %s): %s\n", del, d.Key, buildkite.Bytes(d.Size),
			stamp(d.Saved), stamp(d.Used), d.Reason)
	}
	for _, m := range p.Markers {
		fmt.Fprintf(w, "%s marker %s\n", del, m)
	}
	for _, u := range p.Uploads {
		fmt.Fprintf(w, "%s incomplete multipart upload %s of %s (initiated %s)\n", abort, u.ID, u.Key, stamp(u.Initiated))
	}
	verb := "deletes" // the plan is printed before it is carried out; a failure follows on stderr
	if dryRun {
		verb = "would delete"
	}
	fmt.Fprintf(w, "gc %s %d cache(s) of %d, freeing %s (%d bytes): %s -> %s; %d marker(s); %d incomplete upload(s)",
		verb, len(p.Caches), len(p.Caches)+p.Kept, buildkite.Bytes(p.Freed), p.Freed, buildkite.Bytes(p.Before),
		buildkite.Bytes(p.After), len(p.Markers), len(p.Uploads))
	if p.Unknown > 0 {
		fmt.Fprintf(w, "; %d object(s) that are not caches left alone", p.Unknown)
	}
	fmt.Fprintln(w)
}

// GC lists the prefix once, plans (PlanGC), prints the plan to w and, unless o.DryRun, carries it
// out: caches first, then markers (a cache never outlives its newest marker, so an interrupted gc
// leaves at worst orphan markers, which the next removes), then stale uploads. Deletions are
// DeleteObjects calls of up to 1,000 keys. A failure is returned after the rest was tried; a
// listing of uploads that fails (no s3:ListBucketMultipartUploads) does not stop the deletions.
func GC(ctx context.Context, store Store, prefix string, o GCOptions, w io.Writer) (Plan, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	inv, err := Load(ctx, store, prefix)
	if err != nil {
		return Plan{}, err
	}
	root := inv.Prefix
	if root != "" {
		root += "/"
	}
	var errs []error
	uploads, err := store.Uploads(ctx, root)
	if err != nil {
		errs = append(errs, fmt.Errorf("incomplete uploads left alone: %w", err))
	}
	p := PlanGC(inv, uploads, o)
	p.Write(w, o.DryRun)
	if o.DryRun {
		return p, errors.Join(errs...)
	}
	keys := make([]string, len(p.Caches))
	for i, d := range p.Caches {
		keys[i] = d.Key
	}
	if err := store.DeleteKeys(ctx, keys); err != nil {
		// Keep the markers of caches that may still exist: the next run decides again.
		return p, errors.Join(append(errs, fmt.Errorf("delete caches: %w", err))...)
	}
	if err := store.DeleteKeys(ctx, p.Markers); err != nil {
		errs = append(errs, fmt.Errorf("delete markers: %w", err))
	}
	for _, u := range p.Uploads {
		if ctx.Err() != nil {
			break
		}
		if err := store.AbortUpload(ctx, u); err != nil {
			errs = append(errs, err)
		}
	}
	return p, errors.Join(append(errs, ctx.Err())...)
}

// ParseAge reads a duration for --unused-for and --keep-recent: Go's (36h, 90m) or a number of
// days (7d).
func ParseAge(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil || !(n >= 0 && n <= 36500) { // also NaN and Inf
			return 0, fmt.Errorf("invalid duration %q: want days (7d) or a duration such as 36h or 90m", s)
		}
		return time.Duration(n * float64(24*time.Hour)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("invalid duration %q: want days (7d) or a duration such as 36h or 90m", s)
	}
	return d, nil
}

// Age formats a duration as ParseAge reads it: whole days as 7d, else Go's form.
func Age(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}
