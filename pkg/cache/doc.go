// Package cache restores and saves one cache: a set of paths stored as one archive at a
// content-addressed key (docs/design.md#save, docs/design.md#restore). It joins pkg/archive and
// pkg/s3, which know nothing of each other.
//
// Restore walks the candidate keys narrowest first; the first that exists wins. A family
// candidate (cachekey.Key.Newest, the newest-match fallback) is resolved to the most recently
// saved object below its prefix by one listing bounded by s3.ListLimit keys, and is a fallback. Its archive is
// streamed from pinned ranged GETs straight into decompress and untar, into staging directories
// next to the targets, and swapped into place only when the whole stream has been read and its
// checksum verified. If the object changes, disappears, or arrives corrupt, staging is discarded
// and the restore starts over, up to the configured number of restarts. A hostile archive is
// refused at once: retrying would fetch the same bytes.
//
// Warm restores (docs/design.md#warm-restores): after a restore that extracted an object, and
// after a save that stored one while the paths did not change, the paths' stamp records the
// object's key and ETag and a digest of the lstat metadata of every entry (inode change times
// and inode numbers included, no content), in Options.StampDir. A save does not walk the paths:
// its archive describes every entry as it reads it (archive.Observer), from which treeRecorder
// computes the digest a walk would, and the save stamps only if no inode change time in it is
// later than the moment the archive began reading them less ctimeWindow, the same inodes stand
// at the paths and the archive stored every entry it met. A change before the archive read an
// entry shows so; one after changes the entry's inode change time, which the next restore's
// walk sees. A restore whose candidate, after its HEAD, is that object and
// whose paths still have that digest downloads nothing and reports the same hit
// (Restored.Warm). The walk begins once the paths are locked, alongside the HEADs, when the
// stamp names a candidate key (walkEarly); it is cancelled, and stands for nothing, once a
// download begins. The stamp is written only once any later change is bound to carry a later
// inode change time; a missing or corrupt stamp, or any difference, is a real restore.
//
// Last use: Cache.Used, when set, is told the key of each hit of Restore as its download starts,
// so the hooks can leave a last-use marker for s3-cache gc alongside the download; it must not
// block, and nothing of the restore depends on it.
//
// Lookup answers which candidate Restore would take with HEAD requests alone (the lookup-only
// key): it downloads nothing, takes no host lock and leaves the paths alone.
//
// Save streams walk → tar → compress → upload, with no temporary file, as a conditional create:
// if another job stored the key first, that is success and nothing is overwritten. Saving under
// several levels walks and compresses once: the archive streams into one upload per key that has
// no object yet, each part buffered once for all of them (pkg/s3), and an upload that fails does
// not stop the others.
//
// Jobs of several agents on one host may use the same paths: a restore holds the paths' host
// locks exclusively from start to end, a save shares them while it reads the paths
// (archive.LockTargets), so a save never archives a tree a restore is replacing and a restore
// never replaces a tree while another restores it. A job that has to wait logs "Waiting for
// another job on this host to finish with <path>…"; after LockTimeout (10 minutes by default)
// it gives up with an error wrapping archive.ErrLockTimeout. Cancellation ends the wait.
//
// Vocabulary: a restart runs a whole restore or save again (a restore whose object changed or
// broke, up to config.CacheOptions.Restarts, the download-retries key; a save answered 409, up to
// conflictRestarts); an attempt is one S3 request tried again, inside pkg/s3 (the retries key,
// s3.Options.Retries). The compression level is config.CacheOptions.CompressionLevel; "level" alone is
// a cache level (config.Level).
//
// On failure or cancellation a restore leaves every target exactly as it was and no staging
// behind (pkg/archive), and a save leaves no object and no multipart upload behind (pkg/s3).
package cache
