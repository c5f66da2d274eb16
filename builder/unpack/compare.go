package unpack

import (
	"bytes"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Comparing a file being unpacked with a candidate of the store while its body is read (shared file
// data: reflinks in share.go, hard links in linknow.go). Both ways read the body and the candidate
// chunk by chunk until they differ; only what they make of the equal part differs.

// equalPrefix compares the body of a file being unpacked, of size bytes, with src. first (aliasing
// buf) holds the body's first bytes, read already; if src begins otherwise, off is -1 and nothing
// more is read. Else it reads the body a chunk (of buf) at a time, comparing each with src (read into
// cmp), up to the first chunk that differs: off is where that chunk (diff, aliasing buf, read from the
// body) starts, all before it equal to src. At the end of an equal body, off is size and diff nil.
// A candidate that cannot be read counts as differing.
func equalPrefix(src *os.File, body io.Reader, first []byte, size int64, buf, cmp []byte) (off int64, diff []byte, err error) {
	// All of src is likely to be read (the index found its first bytes' crc), and it is mostly on disk
	// only (an earlier night's layer): ask for it now, so that the disk reads it while the body is
	// decompressed, not a chunk at a time in between (a hint: its failure changes nothing).
	_ = unix.Fadvise(int(src.Fd()), 0, size, unix.FADV_WILLNEED)
	if _, err := src.ReadAt(cmp[:len(first)], 0); err != nil || !bytes.Equal(first, cmp[:len(first)]) {
		return -1, nil, nil
	}
	for off = int64(len(first)); off < size; off += int64(len(diff)) {
		diff = buf[:min(int64(len(buf)), size-off)]
		if _, err := io.ReadFull(body, diff); err != nil {
			return off, nil, bodyReadError(err)
		}
		if _, err := src.ReadAt(cmp[:len(diff)], off); err != nil || !bytes.Equal(diff, cmp[:len(diff)]) {
			return off, diff, nil
		}
	}
	return size, nil, nil
}

// writeRest writes into the new file fd, whose first off bytes are in place, the chunk diff that the
// body holds from off on (aliasing buf) and the rest of the body after it.
func writeRest(fd int, off int64, diff []byte, body io.Reader, size int64, buf []byte) error {
	w := bodyWriter{fd: fd, off: off, end: off}
	if err := w.write(diff); err != nil {
		return err
	}
	return w.fill(body, size, buf)
}
