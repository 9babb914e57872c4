// Package archive turns a list of cache paths into one compressed tar
// stream (Write), and safely restores such a stream into place (Extract).
//
// # Archive layout
//
// An archive is one tar stream in PAX format, compressed with zstd, gzip
// (CRC-32 per member) or not at all, and ending with its own checksum (see
// below), so that every restore is verified whatever the compression. Write
// compresses zstd on every core (up to 6): the tar stream is cut into blocks
// of 8 MiB, each compressed as an independent zstd frame with its content
// checksum (but for raw runs, below), and the frames are written in order,
// so the stream is a plain concatenation of frames that any zstd decoder
// reads (what `zstd -T0` and pzstd write; Extract reads a stream of one
// frame, from the zstd command or an earlier version, just the same). At most workers+2 blocks are held.
// Runs of 512 KiB or more of a block that look random (a sampled byte
// entropy: random or already compressed data) are stored in raw frames of
// their own, without the search for matches that would find none; those
// frames carry no checksum of their own, the trailer covers them (see
// rawRuns).
// The walk of a directory source runs ahead of the tar writer, and 4 workers
// open its regular files meanwhile and have the kernel start reading those
// of up to 1 MiB (posix_fadvise); the writer takes the entries in walk
// order and reads each file's content straight into the block of the frame
// being filled, not through a buffer of its own, so the archive is the same
// bytes as a serial walk's, copied once less (code: walkAhead, tarWriter,
// frameWriter). WriteObserved also tells an Observer each entry it stores,
// with the lstat (for a regular file, the fstat of the file opened) its header
// was made from, and each entry it meets but leaves out: a save describes the
// tree for warm restores without walking it again. Source i of Write is
// stored under the top-level name strconv.Itoa(i):
//
//	0/               source 0 is a directory: its root...
//	0/bin/           ...and everything below it, names slash-separated,
//	0/bin/tool       in filepath.WalkDir order (lexical, deterministic)
//	0/lib -> ../x    a symlink, target stored exactly as read (never followed)
//	0/tool2 => 0/bin/tool
//	                 a hard link: a later name of an inode already stored
//	                 within the same source
//	1                source 1 is a single regular file
//	GlobalHead.0.0   the checksum trailer (a PAX global header)
//
// Names are the bytes the operating system gave, not necessarily UTF-8 (a
// Linux file name is any bytes but "/" and NUL): newlines, backslashes and
// Latin-1 bytes are kept as they are. Names that do not fit the 100-byte tar
// header field (long paths, components up to NAME_MAX) or are not ASCII are
// stored in PAX path records, which archive/tar and GNU tar read back byte
// for byte. (No hdrcharset record: GNU tar 1.34 warns about it.)
//
// The checksum trailer is the last entry: a PAX global header whose one
// record, S3CACHE.crc32c, holds the CRC-32C of every tar byte before that
// header, as 8 hex digits. Tar tools treat a global header as metadata and
// ignore the vendor keyword, so `tar -xf` reads the archive silently.
//
// Each entry records the permission bits (0o777; setuid, setgid and sticky are
// dropped) and the modification time with nanoseconds. Owners are not recorded
// (uid/gid 0, no names): restored files belong to whoever runs the restore.
// Device nodes, FIFOs and sockets are skipped with a warning, and so is a
// source that does not exist (its index simply has no entries). A source that
// is itself a symlink is stored as that symlink, not as what it points to.
// After the trailer comes the tar end-of-archive marker, and the stream ends:
// Extract rejects any non-zero byte after it. (Archives made before the
// trailer existed have keys of an older format version, see pkg/cachekey,
// and are never looked up.)
//
// # Hostile and unrepresentable names
//
// The name rules of step 2 below are the same on every operating system, and
// a name breaking one is hostile: it could only serve to write outside a
// target or through a link, so the whole archive is refused (ErrUnsafe). A
// name that passes them but that this system cannot hold is merely
// unrepresentable: a component longer than NAME_MAX (255 bytes) on unix,
// invalid UTF-8 on macOS, a reserved name (CON, NUL...), ":" or "\" on
// Windows. Such an entry is skipped with one warning naming it (escaped with
// %q), and so is everything below it, silently, and a hard link to it; the
// rest is restored. A backslash is an ordinary character on unix ("a\b"
// restores as such); on Windows, where it is a separator, the entry is
// skipped, never interpreted. So whatever Write stores on a system, Extract
// restores on the same system (keys include the OS, see pkg/cachekey).
//
// # Extraction algorithm
//
//  1. Stream. The stream is decompressed and tar entries are read one at a
//     time, in order, by one reader goroutine, which does steps 2 and 3 for
//     every entry except writing small files. A regular file of up to 1 MiB
//     is read into a pooled buffer and handed to a pool of 8 writer
//     goroutines (file creation is syscall bound, so more writers than
//     cores); the buffers in flight hold at most 32 MiB, the reader waiting
//     for the writers beyond that. A larger file is copied by the reader
//     itself with a 1 MiB buffer. So memory does not grow with file or
//     archive size. (Extract does keep a table of the entry names it has
//     seen, roughly 100 bytes per entry, to enforce the rules below.)
//     Code: Extract, newDecompressor, readArchive, extractEntry, writeFile,
//     writerPool.
//  2. Validate, then create. Before anything is created for an entry, its
//     name is checked: relative, canonical (path.Clean), no ".." and no NUL,
//     first component a canonical target index ("3", not "03"), not seen
//     before, and every parent a directory created by this extraction
//     (missing parents are created as plain directories). So nothing can be
//     written through a symlink, not even one from the same archive. A hard
//     link must point at a regular file already extracted under the same
//     target index. Symlinks are created exactly as recorded (absolute and
//     ".." targets are allowed) but are never followed, chmodded or chtimed.
//     Files are created with O_CREATE|O_EXCL (and O_NOFOLLOW on unix),
//     directories with Mkdir, so nothing existing is ever reused. A writer
//     only creates a file whose entry the reader has checked and whose
//     parents the reader has made; hard links are made after every file is
//     written, in archive order (a link's file may still be queued). Any
//     violation refuses the whole archive with ErrUnsafe. Device nodes and
//     FIFOs are skipped with a warning; any other entry type is refused.
//     Code: checkEntry, then planEntry, then skipEntry or createEntry.
//  3. Stage. The content of target T is extracted into
//     <dir(T)>/.<base(T)>.s3-cache-staging-<pid>-<random>/root, on the same
//     filesystem as T; if T is a mount point (a Docker volume, a tmpfs, a
//     bind mount), into the same name inside T. A base longer than 100 bytes
//     is cut to 64 and a hash in these names, so they fit NAME_MAX. The
//     staging directory is flocked while its process lives. Before that,
//     Extract removes the leftovers of earlier restores of T that no process
//     holds (see below). Directories are created 0o700 so read-only trees
//     (Go's module cache is 0o555) can be filled. On Linux a file costs
//     open (with its final mode), one write (up to 1 MiB), futimens for its
//     mtime and close, plus fchmod only where the umask (read from
//     /proc/self/status) took bits away, or on every file if the staging
//     directory has a default ACL (which then replaces the umask, and
//     which it inherits from the target's directory); elsewhere it is
//     created 0o600 and gets its mode by fchmod and its mtime by path once
//     closed. Directory
//     modes and mtimes are applied at the end, after the writers and the
//     hard links, deepest first.
//     Code: sweepTarget, stage, makeDir, writeFile, createFile, makeLinks,
//     applyDirMetadata.
//  4. Verify. The CRC-32C of the tar bytes read is compared with the
//     trailer's; a missing trailer, a mismatch, or any entry after the
//     trailer is ErrCorrupt. After the tar end-of-archive marker the rest of
//     the stream is read to its end, which makes the decompressor check the
//     checksum of every compressed frame. Only zero bytes (tar padding) may
//     follow the marker. After an entry refused as unsafe the rest of the
//     stream is read too: a mismatched trailer, a tar header that does not
//     parse or a frame checksum makes it ErrCorrupt, not ErrUnsafe (a raw
//     frame has no checksum of its own to give damage away sooner).
//     Code: checkTrailer, verifyEnd, and refuse after a hostile entry.
//  5. Swap. Only then, for each target with content in the archive: on Linux
//     (renameat2 RENAME_EXCHANGE) and macOS (renamex_np RENAME_SWAP) the
//     staged root and T are exchanged in one step, so T exists at every
//     instant; elsewhere, or where the filesystem cannot, T is renamed to
//     <dir(T)>/.<base(T)>.s3-cache-old-<pid>-<random> and the staged root
//     to T. A mount point T stays where it is: its children are moved into
//     the staging directory and the staged root's children into T. The
//     target roots get their mode and mtime, and the staging directories,
//     which now hold the previous contents, are renamed to
//     .<base(T)>.s3-cache-trash-<pid>-<random> and removed by 8 goroutines:
//     each lists a directory, unlinks what is not a directory (relative to
//     the directory's descriptor) and queues the subdirectories; the last
//     to finish in a directory removes it, so directories go bottom-up
//     (removeTree). A directory is listed only if it is still the inode its
//     parent's listing found, so a symlink that replaced it or a directory
//     above it during the removal is never followed. If a swap fails,
//     the swaps already made are undone. A target whose index has no entry in
//     the archive is not touched.
//     Code: swapAll (stagedTarget.swapIn, swapOut to undo), then finish.
//
// # Several processes
//
// Extract and Write do not lock. Every process that restores or saves a
// target must hold its host lock (LockTargets: exclusive to restore, shared
// to save), as pkg/cache does: then no two restores of a target overlap, and
// a save never reads a tree a restore is replacing. Under that lock, a
// staging, trash or old helper of T that is not flocked belongs to a dead
// process, and the sweep removes it, with a warning: LockTargets runs it
// when it takes a restore's lock (so a cache miss sweeps too), Extract when
// it starts. A process of a version without these locks is not protected
// and not recognised.
//
// # Guarantees on failure
//
// A target is either wholly replaced or left exactly as it was. On any error
// or cancellation before the swap (a hostile entry, a corrupt or truncated
// stream, a failing reader, a full disk), every staging directory is removed
// and no target has been touched. The first failure, the reader's or a
// writer's, is the one reported: a failed writer stops the reader, and the
// writers drop their queue and are waited for before the staging directory
// is removed, so no goroutine outlives Extract. Errors wrap ErrUnsafe for a hostile archive
// and ErrCorrupt for a damaged or truncated stream; other errors (the caller's
// reader failing, cancellation, the filesystem) are wrapped as they are.
// Parent directories of a target may have been created. If undoing a failed
// swap fails too, the error says where the previous content is, and that
// directory is left for the next sweep.
//
// A cancellation (the agent's SIGTERM) never interrupts a swap; the removal
// that follows starts with a rename to a trash name, so the agent's grace
// period need not cover it. A crash or kill (SIGKILL after the grace period,
// a power cut) leaves at most: staging or trash helpers next to the target
// (inside it for a mount point), and with several targets, some swapped and
// some not. Each target exists and is whole, except (1) without the atomic
// exchange, a kill between the two renames leaves T missing, its previous
// content in .<base>.s3-cache-old-*; (2) a kill while the children of a
// mount point are moved leaves it with part of each tree, the rest in the
// staging helper inside it. The next restore of the target sweeps every such
// helper; nothing else reads them, and they are safe to delete by hand.
//
// Two jobs on one host that use the same target are serialized by its host
// lock: a restore waits for a restore or a save in progress (up to the
// lock's timeout) and then replaces the tree whole. The lock file
// .<base>.s3-cache.lock beside the target is removed by its last holder; a
// killed holder leaves it (empty, harmless), and its lock ends with it.
//
// Write, on error, returns after stopping the walk, the read-ahead workers and
// the compressor (frames not yet written are dropped), with no goroutine
// left; whatever it wrote to w so far is not a valid archive and must be
// discarded.
package archive
