package inventory

// Why a file: what s3-cache ls shows, filtered, sorted and summed.

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/buildkite"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cachekey"
)

// Levels are the values of Cache.Level, for --level.
var Levels = []string{"file", "step", "branch", "pipeline", "all", Unknown}

// Filter selects caches; an empty field selects all.
type Filter struct {
	Org      string // organisation slug
	Pipeline string // pipeline slug
	Level    string // one of Levels
	// Branch selects the branch level's caches of the branch and every cache of the branch's own
	// namespace (isolation), the name given as the build's BUILDKITE_BRANCH or as its slug.
	Branch string
}

// Match reports whether c passes f.
func (f Filter) Match(c Cache) bool {
	switch {
	case f.Org != "" && c.Org != f.Org,
		f.Pipeline != "" && c.Pipeline != f.Pipeline,
		f.Level != "" && c.Level != f.Level:
		return false
	case f.Branch != "":
		return c.Level == "branch" && (c.Branch == f.Branch || c.Branch == cachekey.Slug(f.Branch)) ||
			c.Namespace == cachekey.BranchNamespace(f.Branch)
	}
	return true
}

// Select returns the caches of inv that pass f.
func (inv *Inventory) Select(f Filter) []Cache {
	var out []Cache
	for _, c := range inv.Caches {
		if f.Match(c) {
			out = append(out, c)
		}
	}
	return out
}

// Sorts are the orders of --sort.
var Sorts = []string{"key", "size", "age", "used"}

// Sort orders cs by: key (the listing's order), size (largest first), age (oldest saved first) or
// used (least recently used first: the order gc deletes in). Ties fall back to the key.
func Sort(cs []Cache, by string) {
	slices.SortStableFunc(cs, func(a, b Cache) int {
		var c int
		switch by {
		case "size":
			c = cmp.Compare(b.Size, a.Size)
		case "age":
			c = a.Saved.Compare(b.Saved)
		case "used":
			c = a.LastUse().Compare(b.LastUse())
		}
		return cmp.Or(c, strings.Compare(a.Key, b.Key))
	})
}

// WriteJSON writes one JSON object per cache and line (see Cache for the field names).
func WriteJSON(w io.Writer, cs []Cache) error {
	enc := json.NewEncoder(w)
	for _, c := range cs {
		c.Saved, c.Used = c.Saved.UTC(), c.Used.UTC()
		if err := enc.Encode(c); err != nil {
			return err
		}
	}
	return nil
}

// WriteTable writes cs as a table for people, then the totals per pipeline and level.
func WriteTable(w io.Writer, cs []Cache) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ORG\tPIPELINE\tLEVEL\tBRANCH/STEP\tNAMESPACE\tSIZE\tSAVED\tLAST USED\tKEY")
	for _, c := range cs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", dash(c.Org), dash(c.Pipeline), c.Level,
			dash(c.Branch+c.Step), dash(c.Namespace), buildkite.Bytes(c.Size), stamp(c.Saved), stamp(c.Used), c.Key)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return WriteTotals(w, cs)
}

// Total is the count and bytes of the caches of one pipeline at one level.
type Total struct {
	Org, Pipeline, Level string
	Count                int
	Size                 int64
}

// Totals sums cs per organisation, pipeline and level, in that order.
func Totals(cs []Cache) []Total {
	byKey := map[[3]string]*Total{}
	var out []*Total
	for _, c := range cs {
		k := [3]string{c.Org, c.Pipeline, c.Level}
		t := byKey[k]
		if t == nil {
			t = &Total{Org: c.Org, Pipeline: c.Pipeline, Level: c.Level}
			byKey[k] = t
			out = append(out, t)
		}
		t.Count++
		t.Size += c.Size
	}
	slices.SortFunc(out, func(a, b *Total) int {
		return cmp.Or(strings.Compare(a.Org, b.Org), strings.Compare(a.Pipeline, b.Pipeline),
			cmp.Compare(slices.Index(Levels, a.Level), slices.Index(Levels, b.Level)))
	})
	res := make([]Total, len(out))
	for i, t := range out {
		res[i] = *t
	}
	return res
}

// WriteTotals writes the totals per pipeline and level, and the grand total.
func WriteTotals(w io.Writer, cs []Cache) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "ORG\tPIPELINE\tLEVEL\tCACHES\tSIZE\t")
	var n int
	var size int64
	for _, t := range Totals(cs) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t\n", dash(t.Org), dash(t.Pipeline), t.Level, t.Count, buildkite.Bytes(t.Size))
		n, size = n+t.Count, size+t.Size
	}
	fmt.Fprintf(tw, "total\t\t\t%d\t%s\t\n", n, buildkite.Bytes(size))
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// stamp formats a time for the table, in UTC to the minute; the zero time is "never".
func stamp(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04")
}
