// Package inventory is the s3-cache command: it shows what a bucket of caches holds (ls) and
// evicts the least recently used (gc) (docs/design.md#last-use-tracking-and-gc).
//
// Load lists the prefix once, with no HEAD per object: a delimited listing of each of the first
// two levels (organisations, pipelines) finds the pipelines' folders, which are then listed
// concurrently (ListObjectsV2, 1,000 keys a page), since one listing of the whole prefix would be
// a sequence of pages each waiting for the last. It reads every name back into the parts
// cachekey.For put into it (Parse): organisation, pipeline, namespace, level and its folder. A
// name of another shape is kept as level Unknown, shown by ls and never deleted by gc. The
// last-use markers the hooks write (cachekey.UsedMarker, below <prefix>/.s3-cache-used/) are in
// the same listing: a cache's last use is its newest marker's LastModified, and markers whose
// cache is not listed are orphans.
//
// gc plans before it deletes (PlanGC): caches ordered by last use (else their save), oldest first;
// every one unused for UnusedFor goes, then more until the caches hold at most MaxSize; none used
// or saved within KeepRecent goes, whatever the budget. It then deletes, in DeleteObjects calls of
// up to 1,000 keys: the caches, then the markers of caches gone and all but each kept cache's
// newest, then it aborts multipart uploads initiated over a day ago. The clock is GCOptions.Now.
//
// On failure: the plan is computed from one listing before anything is deleted, and a dry run
// deletes nothing. Caches are deleted before their markers, so an interrupted gc leaves at worst
// orphan markers, which the next run removes, never a cache without the marker that dates its use.
// A cache deleted while a job restores it makes that restore a clean miss (pinned reads see the
// object vanish; the restore discards its staging). Markers of the last KeepRecent are never
// deleted as orphans: their cache may have been saved after the listing passed its name. A
// deletion that fails is reported (exit status 1) after the rest was tried; the markers of caches
// that could not be deleted are kept.
package inventory
