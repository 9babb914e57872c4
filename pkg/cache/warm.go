package cache

// Why a file: warm restores (docs/design.md#warm-restores) — the stamp that proves a target
// still holds what a restore or a save left there, how it is recorded and how it is trusted.

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/atomicfile"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cachekey"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/s3"
)

var (
	// errChanged: the tree changed under a walk, or while a save's archive read it.
	errChanged = errors.New("the paths changed while they were read")
	// errNoDigest: this system cannot prove a tree untouched (no inode change time).
	errNoDigest = errors.New("no tree digest on this system")
	// errNotRecorded: a save stored an object but no archive recorded the tree it read.
	errNotRecorded = errors.New("no archive recorded the tree it read")
)

// meta is what a tree's digest records of one entry's lstat: with the name and a symlink's
// target, everything a change to the entry changes. mode holds the type bits too.
type meta struct {
	mode         uint32
	nlink        uint64
	uid, gid     uint32
	size         int64
	mtime, ctime int64 // nanoseconds since the epoch
	ino, dev     uint64
}

// tree is the digest of the lstat metadata of every entry of a cache's paths (digestTree), and
// what the walk saw on the way.
type tree struct {
	digest   [sha256.Size]byte
	entries  int64    // entries walked, the targets included
	bytes    int64    // size of the regular files
	maxCtime int64    // the latest inode change time, ns
	roots    []rootID // what stood at each path, as the walk (or the archive) found it
	// devs: every device the entries lie on, each with whether one of its change times has a
	// part below the millisecond: then that filesystem keeps them finely (ext4, xfs, btrfs,
	// tmpfs, APFS) and a later change cannot share one by truncation. Per device, because a
	// filesystem mounted inside the paths (FAT, ext3) may keep whole seconds while the rest
	// does not. Almost always one device: a slice, searched from its end.
	devs []devTimes
	// foreign: an entry a restore of the tree's archive would not reproduce as it is: not a
	// file, directory or symlink; setuid, setgid or sticky; owned by another user.
	foreign bool
}

// devTimes says whether a device's change times are kept finely (tree.devs).
type devTimes struct {
	dev  uint64
	fine bool
}

// noteDev records that an entry lies on dev, with a change time kept finely or not.
func (t *tree) noteDev(dev uint64, fine bool) {
	for i := len(t.devs) - 1; i >= 0; i-- {
		if t.devs[i].dev == dev {
			t.devs[i].fine = t.devs[i].fine || fine
			return
		}
	}
	t.devs = append(t.devs, devTimes{dev: dev, fine: fine})
}

// fine reports whether every device of the tree keeps change times finely (tree.devs).
func (t *tree) fine() bool {
	for _, d := range t.devs {
		if !d.fine {
			return false
		}
	}
	return len(t.devs) > 0
}

// rootID is what stands at one of a cache's paths: an inode, or nothing (the zero rootID).
type rootID struct {
	dev, ino uint64
	exists   bool
}

const (
	modeType     = 0o170000
	modeDir      = 0o040000
	modeRegular  = 0o100000
	modeSymlink  = 0o120000
	modeSpecials = 0o7000 // setuid, setgid, sticky
)

func (t *tree) addEntry(m meta, uid uint32) {
	t.entries++
	kind := m.mode & modeType
	if kind == modeRegular {
		t.bytes += m.size
	}
	t.maxCtime = max(t.maxCtime, m.ctime)
	t.noteDev(m.dev, m.ctime%int64(time.Millisecond) != 0)
	t.foreign = t.foreign || m.uid != uid || m.mode&modeSpecials != 0 ||
		(kind != modeRegular && kind != modeDir && kind != modeSymlink)
}

func (t *tree) merge(o tree) {
	t.entries += o.entries
	t.bytes += o.bytes
	t.maxCtime = max(t.maxCtime, o.maxCtime)
	for _, d := range o.devs {
		t.noteDev(d.dev, d.fine)
	}
	t.foreign = t.foreign || o.foreign
}

// appendRecord appends one entry's record to a directory's digest: name, then m (nil: the
// name does not exist) and a symlink's target, each length-prefixed where its length varies.
func appendRecord(b []byte, name string, m *meta, link []byte) []byte {
	b = appendBytes(b, []byte(name))
	if m == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.LittleEndian.AppendUint32(b, m.mode)
	b = binary.LittleEndian.AppendUint64(b, m.nlink)
	b = binary.LittleEndian.AppendUint32(b, m.uid)
	b = binary.LittleEndian.AppendUint32(b, m.gid)
	for _, v := range []int64{m.size, m.mtime, m.ctime} {
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
	}
	b = binary.LittleEndian.AppendUint64(b, m.ino)
	b = binary.LittleEndian.AppendUint64(b, m.dev)
	return appendBytes(b, link)
}

func appendBytes(b, s []byte) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// dirSum is the digest of one directory's entries, named by its path from the target's index.
type dirSum struct {
	rel string
	sum [sha256.Size]byte
}

// treeDigest is a tree's digest: of the paths' own records (roots), then of each directory's
// digest by its name, in name order (dirs is sorted), so that it does not depend on the order in
// which the directories were read.
func treeDigest(roots hash.Hash, dirs []dirSum) [sha256.Size]byte {
	slices.SortFunc(dirs, func(a, b dirSum) int { return strings.Compare(a.rel, b.rel) })
	h := sha256.New()
	h.Write(roots.Sum(nil))
	for _, d := range dirs {
		h.Write(appendBytes(nil, []byte(d.rel)))
		h.Write(d.sum[:])
	}
	var sum [sha256.Size]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// stampVersion changes whenever the digest or the file changes meaning: an old stamp is then
// simply not trusted.
const stampVersion = 1

// stamp says that the paths held the objects' content when their digest was Digest, at At.
type stamp struct {
	Version int           `json:"version"`
	Paths   []string      `json:"paths"`
	Objects []stampObject `json:"objects"`
	Digest  string        `json:"digest"`
	Entries int64         `json:"entries"`
	At      time.Time     `json:"at"`
}

// stampObject is an object by key and ETag (without quotes): the same key and ETag, the same bytes.
type stampObject struct {
	Key  string `json:"key"`
	ETag string `json:"etag"`
}

func objectOf(key, etag string) stampObject {
	return stampObject{Key: key, ETag: strings.Trim(etag, `"`)}
}

// stampPath is the stamp file of c.Paths, named by a hash of them; "" when stamps are off.
func (c *Cache) stampPath() string {
	if c.Options.StampDir == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(strings.Join(c.Paths, "\x00")))
	return filepath.Join(c.Options.StampDir, "warm-"+hex.EncodeToString(sum[:16])+".json")
}

// readStamp reads the stamp of c.Paths. Missing, unreadable, corrupt, of another version or of
// other paths: there is none.
func (c *Cache) readStamp() (stamp, bool) {
	p := c.stampPath()
	if p == "" {
		return stamp{}, false
	}
	doc, err := os.ReadFile(p)
	if err != nil {
		return stamp{}, false
	}
	var st stamp
	if json.Unmarshal(doc, &st) != nil || st.Version != stampVersion || !slices.Equal(st.Paths, c.Paths) || st.Digest == "" {
		return stamp{}, false
	}
	return st, true
}

// warm reports whether c.Paths still hold obj's content, as a restore or save of it on this
// host left them: the stamp names obj and the tree's digest is the one recorded then. The
// caller holds the paths' host locks exclusively.
// The walk is early's, unless there is none (nil, or stopped).
func (c *Cache) warm(ctx context.Context, obj s3.Object, early *earlyWalk) (tree, stamp, bool) {
	st, ok := c.readStamp()
	if !ok || !slices.Contains(st.Objects, objectOf(obj.Key, obj.ETag)) {
		return tree{}, st, false
	}
	paths, at := strings.Join(c.Paths, ", "), st.At.UTC().Format(time.RFC3339)
	t, err := early.result()
	if errors.Is(err, errNoWalk) {
		t, err = digestTree(ctx, c.Paths)
	}
	switch {
	case err != nil:
		c.Log.Infof("Could not tell whether %s changed since %s was restored or saved there (%s): %v; restoring it",
			paths, obj.Key, at, err)
	case hex.EncodeToString(t.digest[:]) != st.Digest:
		c.Log.Infof("%s changed since %s was restored or saved there (%s): restoring it", paths, obj.Key, at)
	default:
		return t, st, true
	}
	return tree{}, st, false
}

// earlyWalk is the walk of a warm restore's check, begun as soon as the paths are locked when
// their stamp names one of the candidate keys: the lookups of the keys (and the first request's
// credentials, DNS and connection) then overlap it instead of preceding it. Its result stands
// for the tree as long as the paths' host locks are held and nothing was extracted into them.
type earlyWalk struct {
	cancel context.CancelFunc
	done   chan struct{}
	t      tree
	err    error
}

// walkEarly begins the walk when the stamp of c.Paths names one of candidates' keys (a family's
// key is known only once listed); nil otherwise. The caller holds the paths' host locks and
// stops the walk before it releases them.
func (c *Cache) walkEarly(ctx context.Context, candidates []cachekey.Key) *earlyWalk {
	st, ok := c.readStamp()
	if !ok || !slices.ContainsFunc(candidates, func(k cachekey.Key) bool {
		return !k.Newest && slices.ContainsFunc(st.Objects, func(o stampObject) bool { return o.Key == k.Name })
	}) {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &earlyWalk{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		w.t, w.err = digestTree(ctx, c.Paths)
	}()
	return w
}

// result waits for the walk and returns what it found; errNoWalk for a nil or stopped walk.
func (w *earlyWalk) result() (tree, error) {
	if w == nil {
		return tree{}, errNoWalk
	}
	<-w.done
	return w.t, w.err
}

// stop cancels the walk and waits for it: a nil walk does nothing. Its result is then not the
// tree's any more (it may be cut short), so stop comes before anything is extracted.
func (w *earlyWalk) stop() {
	if w == nil {
		return
	}
	w.cancel()
	<-w.done
	w.t, w.err = tree{}, errNoWalk
}

// errNoWalk: no early walk stands for the tree.
var errNoWalk = errors.New("no walk of the paths")

// ctimeWindow bounds how far an inode change time may lag the clock: the kernel stamps
// changes with a clock that advances once per tick (at most 10 ms).
const ctimeWindow = 30 * time.Millisecond

// settle waits until every change from now on gets an inode change time later than any t
// holds, so that none can go unseen by sharing one. It refuses a tree that cannot be trusted
// that way: empty, on any filesystem with coarse timestamps, or with change times ahead of this
// host's clock (a network filesystem's server).
func settle(ctx context.Context, t tree) error {
	switch {
	case t.entries == 0:
		return errors.New("none of the paths exists")
	case !t.fine():
		return errors.New("a filesystem of the paths keeps coarse timestamps")
	}
	wait := time.Until(time.Unix(0, t.maxCtime).Add(ctimeWindow))
	if wait > 2*ctimeWindow {
		return fmt.Errorf("change times %s ahead of this host's clock", wait-ctimeWindow)
	}
	if wait <= 0 {
		return nil
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stampRestore records that c.Paths hold obj, restored by an extraction that ended at
// extracted. A change time after that is a change by someone else: then, and on any failure,
// no stamp is left for the paths.
func (c *Cache) stampRestore(ctx context.Context, obj s3.Object, extracted time.Time) {
	if c.stampPath() == "" {
		return
	}
	t, err := digestTree(ctx, c.Paths)
	if err == nil && t.maxCtime > extracted.UnixNano() {
		err = errChanged
	}
	c.record(ctx, t, err, []stampObject{objectOf(obj.Key, obj.ETag)})
}

// saveWatch is how a save tells whether the paths changed while its archive read them
// (docs/design.md#warm-restores): when the reading began, what stood at each path then, and
// the tree the archive read, as it read it (treeRecorder).
type saveWatch struct {
	began time.Time // with its monotonic reading
	roots []rootID
	read  tree  // as the archive read it
	err   error // of the roots' lstat or of the recorded tree; errNotRecorded until an archive was written
}

// watchSave notes that a save's archive is about to read c.Paths; nil when stamps are off.
func (c *Cache) watchSave() *saveWatch {
	if c.stampPath() == "" {
		return nil
	}
	w := &saveWatch{began: time.Now()}
	if w.roots, w.err = rootIDs(c.Paths); w.err == nil {
		w.err = errNotRecorded
	}
	return w
}

// recorder returns what records the tree an archive of n paths reads; nil when there is
// nothing to compare it with (stamps are off, or the paths' lstat failed).
func (w *saveWatch) recorder(n int) *treeRecorder {
	if w == nil || w.roots == nil {
		return nil
	}
	return newTreeRecorder(n)
}

// written takes the tree r recorded, once its archive has been written. The stamp names the
// objects of every archive of the save (a restart after a conflict writes another), so every
// one must have read the same tree: a write begun before the save may grow a file between two
// archives with no later change time.
func (w *saveWatch) written(r *treeRecorder) {
	t, err := r.tree()
	first := errors.Is(w.err, errNotRecorded)
	switch {
	case w.err != nil && !first:
		// an earlier archive's tree was refused: so is the save's
	case err != nil:
		w.err = err
	case !first && t.digest != w.read.digest:
		w.err = fmt.Errorf("%w: the archives before and after a restart read different trees", errChanged)
	default:
		w.read, w.err = t, nil
	}
}

// stampClock is the layout of the times a refused save logs: a change inside the window shows.
const stampClock = "15:04:05.000000"

// clockSlack is how far the wall clock may fall behind the monotonic clock during a save, by
// slewing, before the save's change times are no longer comparable with its start.
const clockSlack = 10 * time.Millisecond

// verdict says why the tree the archive recorded cannot be stamped, or nil: now is the wall
// clock once the archive was written, elapsed the monotonic time since the save began. Any
// change made to the paths since the archive began reading them, before it read the entry,
// carries a change time after began less ctimeWindow (the kernel's clock lags by less than
// that), in the changed entry or, for an entry added, removed or renamed, in its directory; the
// one directory the archive does not describe, the parent of a path, is covered by comparing
// what stands at each path. A change after the archive read the entry changes its change time,
// which the next restore's walk sees.
func (w *saveWatch) verdict(now time.Time, elapsed time.Duration) error {
	t := w.read
	switch {
	case w.err != nil:
		return w.err
	case t.foreign:
		return errors.New("the paths hold entries the archive does not keep as they are (special files or bits, another owner)")
	case !slices.Equal(t.roots, w.roots):
		return fmt.Errorf("%w: another file stands at one of the paths", errChanged)
	case t.maxCtime > w.began.Add(-ctimeWindow).UnixNano():
		return fmt.Errorf("%w, or just before: an entry changed at %s, the save began at %s", errChanged,
			time.Unix(0, t.maxCtime).UTC().Format(stampClock), w.began.UTC().Format(stampClock))
	}
	// A clock set back during the save would date later changes before it began.
	if back := elapsed - now.Sub(w.began.Round(0)); back > clockSlack {
		return fmt.Errorf("the clock was set back by %s during the save", back.Round(time.Millisecond))
	}
	return nil
}

// stampSave records that c.Paths hold the objects the save stored, if w's recorded tree shows them
// unchanged since the archive began reading them (verdict).
func (c *Cache) stampSave(ctx context.Context, w *saveWatch, saved []Saved) {
	var objs []stampObject
	for _, s := range saved {
		if s.Stored && s.ETag != "" {
			objs = append(objs, objectOf(s.Key.Name, s.ETag))
		}
	}
	if w == nil || len(objs) == 0 {
		return
	}
	now := time.Now()
	c.record(ctx, w.read, w.verdict(now, now.Sub(w.began)), objs)
}

// record settles t and writes the stamp of objs, or on any failure (err included) removes the
// stamp of the paths.
func (c *Cache) record(ctx context.Context, t tree, err error, objs []stampObject) {
	if err == nil {
		err = settle(ctx, t)
	}
	if err != nil {
		c.removeStamp(err)
		return
	}
	c.write(t, objs)
}

func (c *Cache) write(t tree, objs []stampObject) {
	doc, err := json.Marshal(stamp{Version: stampVersion, Paths: c.Paths, Objects: objs,
		Digest: hex.EncodeToString(t.digest[:]), Entries: t.entries, At: time.Now().UTC()})
	if err == nil {
		err = os.Mkdir(c.Options.StampDir, 0o700)
		if errors.Is(err, os.ErrExist) {
			err = nil
		}
	}
	if err == nil {
		err = atomicfile.Write(c.stampPath(), doc, 0o600)
	}
	if err != nil {
		c.removeStamp(err)
	}
}

// removeStamp removes the stamp of the paths, saying why none is recorded: the next restore
// of them will be a real one.
func (c *Cache) removeStamp(why error) {
	if errors.Is(why, errNoDigest) {
		return // never recorded here: nothing to say
	}
	c.Log.Infof("Not recording %s for warm restores: %v", strings.Join(c.Paths, ", "), why)
	if err := os.Remove(c.stampPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		c.Log.Warnf("remove the warm-restore stamp: %v", err)
	}
}
