package archive

import (
	"archive/tar"
	"bytes"
	"path"
	"strconv"
	"strings"
)

// appendHeader appends to dst the header blocks a tar.Writer writes for hdr,
// when hdr is one of the common headers newHeader makes: a regular file, a
// directory, a symlink or a hard link with a short ASCII name and link name,
// no owner and nothing else. ok is false for any other header, which the
// caller then formats with a tar.Writer.
//
// A tar.Writer costs about 4.7 µs and 25 allocations a header (a node_modules
// tree has 45k entries: 0.2 s of a save's CPU, and its garbage), because it
// handles every format and field. This writes the two shapes it produces for
// these headers: a USTAR header when the modification time is whole seconds,
// and otherwise a PAX extended header holding only the "mtime" record, then
// the USTAR header. TestAppendHeader checks it byte for byte against
// tar.Writer, and FuzzAppendHeader with arbitrary names and times.
func appendHeader(dst []byte, hdr *tar.Header) (_ []byte, ok bool) {
	if !commonHeader(hdr) {
		return dst, false
	}
	secs := hdr.ModTime.Unix()
	if nsecs := hdr.ModTime.Nanosecond(); nsecs != 0 {
		// The PAX header: a minimal file named <dir>/PaxHeaders.0/<base>
		// holding the record, as tar.Writer's writeRawFile makes it.
		record := paxRecord("mtime", paxTime(secs, nsecs))
		var blk [blockSize]byte
		setV7(&blk, paxHeaderName(hdr.Name), tar.TypeXHeader, 0, int64(len(record)), 0)
		dst = appendBlock(dst, &blk)
		dst = append(dst, record...)
		var zeros [blockSize]byte
		dst = append(dst, zeros[:(blockSize-len(record)%blockSize)%blockSize]...)
	}
	var blk [blockSize]byte
	setV7(&blk, hdr.Name, hdr.Typeflag, hdr.Mode, hdr.Size, secs)
	copy(blk[157:257], hdr.Linkname)
	octal(blk[329:337], 0) // devmajor
	octal(blk[337:345], 0) // devminor
	return appendBlock(dst, &blk), true
}

// paxTime formats a time of secs and nsecs (not 0) as a PAX record does:
// seconds, a dot, the nanoseconds without trailing zeros.
func paxTime(secs int64, nsecs int) []byte {
	t := strconv.AppendInt(nil, secs, 10)
	frac := strconv.AppendInt(nil, int64(nsecs)+1e9, 10)[1:] // 9 digits
	return append(append(t, '.'), bytes.TrimRight(frac, "0")...)
}

// paxHeaderName is the name tar.Writer gives the PAX header of name:
// <dir>/PaxHeaders.0/<base>, cut to 100 bytes, without trailing slashes.
func paxHeaderName(name string) string {
	dir, file := path.Split(name)
	name = path.Join(dir, "PaxHeaders.0", file)
	return strings.TrimRight(name[:min(len(name), 100)], "/")
}

// setV7 sets the fields of blk a tar.Writer sets in every header: name, mode,
// owner (none), size, modification time and type.
func setV7(blk *[blockSize]byte, name string, typ byte, mode, size, mtime int64) {
	copy(blk[0:100], name)
	octal(blk[100:108], mode)
	octal(blk[108:116], 0) // uid
	octal(blk[116:124], 0) // gid
	octal(blk[124:136], size)
	octal(blk[136:148], mtime)
	blk[156] = typ
}

// commonHeader tells whether hdr is one appendHeader writes.
func commonHeader(hdr *tar.Header) bool {
	switch hdr.Typeflag {
	case tar.TypeReg:
		if strings.HasSuffix(hdr.Name, "/") {
			return false // tar.Writer refuses it
		}
	case tar.TypeDir, tar.TypeSymlink, tar.TypeLink:
		if hdr.Size != 0 {
			return false
		}
	default:
		return false
	}
	secs := hdr.ModTime.Unix()
	return hdr.Format == tar.FormatPAX &&
		shortASCII(hdr.Name) && hdr.Name != "" && shortASCII(hdr.Linkname) &&
		hdr.Mode >= 0 && hdr.Mode < 1<<21 &&
		hdr.Size >= 0 && hdr.Size < 1<<33 &&
		!hdr.ModTime.IsZero() && secs >= 0 && secs < 1<<33 &&
		hdr.Uid == 0 && hdr.Gid == 0 && hdr.Uname == "" && hdr.Gname == "" &&
		hdr.Devmajor == 0 && hdr.Devminor == 0 &&
		hdr.AccessTime.IsZero() && hdr.ChangeTime.IsZero() &&
		len(hdr.PAXRecords) == 0 && noXattrs(hdr)
}

// noXattrs tells whether hdr has no extended attributes, which a tar.Writer
// would record.
func noXattrs(hdr *tar.Header) bool {
	//lint:ignore SA1019 a tar.Writer still writes the deprecated field
	return len(hdr.Xattrs) == 0
}

// shortASCII tells whether s fits a USTAR name field as it is: at most 100
// bytes, each ASCII and not NUL.
func shortASCII(s string) bool {
	if len(s) > 100 {
		return false
	}
	for i := range len(s) {
		if s[i] == 0 || s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// paxRecord formats a PAX record: "<size> <key>=<value>\n", where size
// counts the whole record, its own digits included (as archive/tar does:
// when counting the digits adds one, count again).
func paxRecord(key string, value []byte) []byte {
	format := func(size int) []byte {
		rec := strconv.AppendInt(nil, int64(size), 10)
		rec = append(rec, ' ')
		rec = append(rec, key...)
		rec = append(rec, '=')
		rec = append(rec, value...)
		return append(rec, '\n')
	}
	size := len(key) + len(value) + 3 // ' ', '=', '\n'
	size += len(strconv.Itoa(size))
	rec := format(size)
	if len(rec) != size {
		rec = format(len(rec))
	}
	return rec
}

// octal writes x into the field b as tar does: zero-padded octal digits and a
// NUL. The caller ensures x fits.
func octal(b []byte, x int64) {
	for i := len(b) - 2; i >= 0; i-- {
		b[i] = byte('0' + x&7)
		x >>= 3
	}
	b[len(b)-1] = 0
}

// appendBlock sets the USTAR magic and version and the checksum of blk, then
// appends it to dst.
func appendBlock(dst []byte, blk *[blockSize]byte) []byte {
	copy(blk[257:263], "ustar\x00")
	copy(blk[263:265], "00")
	sum := 0
	for i, c := range blk {
		if i >= 148 && i < 156 {
			c = ' ' // the checksum field counts as spaces
		}
		sum += int(c)
	}
	octal(blk[148:155], int64(sum))
	blk[155] = ' '
	return append(dst, blk[:]...)
}
