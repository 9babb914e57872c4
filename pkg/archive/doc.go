// Package archive turns a list of cache paths into one compressed tar
// stream (Write), and safely restores such a stream into place (Extract).
//
// # Archive layout
//
// An archive is one tar stream in PAX format, compressed with zstd (the frame
// carries a content checksum), gzip (CRC-32 per member) or not at all, and
// ending with its own checksum (see below), so that every restore is verified
// whatever the compression. Source i of Write is stored under the top-level
// name strconv.Itoa(i):
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
//     time; file contents are copied with a 1 MiB buffer, so memory does not
//     grow with file or archive size. (Extract does keep a table of the entry
//     names it has seen, roughly 100 bytes per entry, to enforce the rules
//     below.)
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
//     directories with Mkdir, so nothing existing is ever reused. Any
//     violation refuses the whole archive with ErrUnsafe. Device nodes and
//     FIFOs are skipped with a warning; any other entry type is refused.
//  3. Stage. The content of target T is extracted into
//     <dir(T)>/.<base(T)>.s3-cache-staging-<random>/root, on the same
//     filesystem as T. Directories are created 0o700 so read-only trees
//     (Go's module cache is 0o555) can be filled; each file gets its mode
//     and mtime once written; directory modes and mtimes are applied at the
//     end, deepest first.
//  4. Verify. The CRC-32C of the tar bytes read is compared with the
//     trailer's; a missing trailer, a mismatch, or any entry after the
//     trailer is ErrCorrupt. After the tar end-of-archive marker the rest of
//     the stream is read to its end, which makes the decompressor check its
//     own checksum. Only zero bytes (tar padding) may follow the marker.
//  5. Swap. Only then, for each target with content in the archive: T (if it
//     exists) is renamed to <dir(T)>/.<base(T)>.s3-cache-old-<random>, the
//     staged root is renamed to T, and the old tree and staging directory are
//     removed. If a swap fails, the swaps already made are undone. A target
//     whose index has no entry in the archive is not touched.
//
// # Guarantees on failure
//
// A target is either wholly replaced or left exactly as it was. On any error
// or cancellation before the swap (a hostile entry, a corrupt or truncated
// stream, a failing reader, a full disk), every staging directory is removed
// and no target has been touched. Errors wrap ErrUnsafe for a hostile archive
// and ErrCorrupt for a damaged or truncated stream; other errors (the caller's
// reader failing, cancellation, the filesystem) are wrapped as they are.
// Parent directories of a target may have been created.
//
// A crash or kill (which no code can clean up after) can leave
// .<base>.s3-cache-staging-* and .<base>.s3-cache-old-* directories next to a
// target, and, only if it happens between the two renames of a swap, T
// missing while its previous content sits in .<base>.s3-cache-old-*. The
// leftovers are never read by this package and are safe to delete.
//
// Write, on error, returns after closing the compressor; whatever it wrote to w
// so far is not a valid archive and must be discarded.
package archive
