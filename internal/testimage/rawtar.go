package testimage

import (
	"archive/tar"
	"bytes"
	"fmt"
)

// Entries whose headers archive/tar cannot write: it writes only USTAR, PAX and GNU headers, and
// no sparse files. Each is written by archive/tar as a USTAR entry, then its header block is
// patched into the older format and its checksum recomputed, so the bytes are what old tar
// programs write.

const blockSize = 512

// Offsets in a tar header block (POSIX ustar; the GNU fields overlay ustar's prefix).
const (
	offTypeflag   = 156
	offChecksum   = 148
	offMagic      = 257 // ustar magic and version, or the GNU "ustar  \x00"
	offGNUSparse  = 386 // 4 × (offset, numbytes), 12 octal bytes each
	offGNURealSz  = 483 // 12 octal bytes: the file's size with its holes
	sparseEntries = 4
)

// V7File is a regular file with a Unix V7 header: no magic, no owner names, typeflag NUL (readers
// take it for a regular file, or a directory when the name ends in "/").
func V7File(name string, mode int64, content string) Entry {
	typ := byte(tar.TypeReg)
	if name[len(name)-1] == '/' {
		typ = tar.TypeDir
	}
	raw := ustarEntry(tar.Header{Typeflag: typ, Name: name, Mode: mode, Size: int64(len(content)), ModTime: Epoch}, []byte(content))
	hdr := raw[:blockSize]
	hdr[offTypeflag] = 0           // the V7 regular-file flag ('\x00')
	clear(hdr[offMagic:blockSize]) // magic, version, uname, gname, devices, prefix
	setChecksum(hdr)
	return Entry{Header: tar.Header{Name: name}, Raw: raw}
}

// SparseChunk is data at Offset in a GNUSparseFile; the rest of the file is a hole.
type SparseChunk struct {
	Offset int64
	Data   string
}

// GNUSparseFile is an old-GNU sparse file (typeflag 'S', as `tar --sparse` writes): the archive
// stores only chunks (at most 4, in order), the header maps them into a file of size bytes.
func GNUSparseFile(name string, mode int64, size int64, chunks ...SparseChunk) Entry {
	if len(chunks) > sparseEntries || len(name) > 100 {
		panic(fmt.Sprintf("testimage: GNUSparseFile %s: at most %d chunks and a 100-byte name", name, sparseEntries))
	}
	var stored bytes.Buffer
	for _, c := range chunks {
		stored.WriteString(c.Data)
	}
	raw := ustarEntry(tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(stored.Len()), ModTime: Epoch}, stored.Bytes())
	hdr := raw[:blockSize]
	hdr[offTypeflag] = tar.TypeGNUSparse
	clear(hdr[offMagic:blockSize])
	copy(hdr[offMagic:], "ustar  \x00")
	for i, c := range chunks {
		putOctal(hdr[offGNUSparse+24*i:][:12], c.Offset)
		putOctal(hdr[offGNUSparse+24*i+12:][:12], int64(len(c.Data)))
	}
	putOctal(hdr[offGNURealSz:][:12], size)
	setChecksum(hdr)
	return Entry{Header: tar.Header{Name: name}, Raw: raw}
}

// ustarEntry is h and body as archive/tar writes them in USTAR format: the header block and the
// body padded to whole blocks. h must fit USTAR (a name of at most 100 bytes, no prefix).
func ustarEntry(h tar.Header, body []byte) []byte {
	if len(h.Name) > 100 {
		panic(fmt.Sprintf("testimage: %s: crafted headers need a name of at most 100 bytes", h.Name))
	}
	h.Format = tar.FormatUSTAR
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&h); err != nil {
		panic(fmt.Sprintf("testimage: %s: %v", h.Name, err))
	}
	if _, err := tw.Write(body); err != nil {
		panic(err)
	}
	if err := tw.Flush(); err != nil { // pads the body; no end-of-archive blocks
		panic(err)
	}
	return buf.Bytes()
}

// PatchTypeflag returns raw (a tar stream) with the header block at offset off given typeflag t
// and a checksum to match: for streams with a header archive/tar refuses to write.
func PatchTypeflag(raw []byte, off int, t byte) []byte {
	hdr := raw[off : off+blockSize]
	hdr[offTypeflag] = t
	setChecksum(hdr)
	return raw
}

// setChecksum stores hdr's checksum: the sum of its bytes with the checksum field read as spaces.
func setChecksum(hdr []byte) {
	copy(hdr[offChecksum:offChecksum+8], "        ")
	sum := 0
	for _, b := range hdr {
		sum += int(b)
	}
	copy(hdr[offChecksum:offChecksum+8], fmt.Sprintf("%06o\x00 ", sum))
}

// putOctal writes v into field as NUL-terminated, zero-padded octal.
func putOctal(field []byte, v int64) {
	copy(field, fmt.Sprintf("%0*o\x00", len(field)-1, v))
}
