package unpack

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

const (
	// copyBufSize is the read size for file bodies: large enough to amortise syscalls, small
	// enough to keep many concurrent unpacks cheap.
	copyBufSize = 1 << 20
	// holeBlock is the granularity of hole detection. It divides copyBufSize, so blocks stay
	// aligned to file offsets across reads, and is a multiple of every common filesystem block size.
	holeBlock = 64 << 10
)

var zeroBlock [holeBlock]byte

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// smallBufPool holds the buffers of files no larger than one hole block, most files of most
// layers: many small layers unpacked at once then hold 64 KiB each instead of 1 MiB.
var smallBufPool = sync.Pool{New: func() any { b := make([]byte, holeBlock); return &b }}

// writeBody copies exactly size bytes from r to the new, empty file fd. Aligned all-zero blocks are
// not written but skipped, so long zero runs (disk images, preallocated databases) become holes;
// the final Ftruncate gives the file its exact size when it ends in a hole.
func writeBody(fd int, r io.Reader, size int64) error {
	pool := &bufPool
	if size <= holeBlock {
		pool = &smallBufPool
	}
	bp := pool.Get().(*[]byte)
	defer pool.Put(bp)
	buf := *bp

	var off, written int64 // written: end of the last data actually written
	for off < size {
		chunk := buf[:min(int64(len(buf)), size-off)]
		if _, err := io.ReadFull(r, chunk); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return fmt.Errorf("the layer stream ends inside this file: %w", io.ErrUnexpectedEOF)
			}
			return err
		}
		// Write each run of non-zero blocks with one pwrite.
		for start := 0; start < len(chunk); {
			end := min(start+holeBlock, len(chunk))
			if isZero(chunk[start:end]) {
				start = end
				continue
			}
			for end < len(chunk) {
				next := min(end+holeBlock, len(chunk))
				if isZero(chunk[end:next]) {
					break
				}
				end = next
			}
			if err := pwriteAll(fd, chunk[start:end], off+int64(start)); err != nil {
				return err
			}
			written = off + int64(end)
			start = end
		}
		off += int64(len(chunk))
	}
	if written < size {
		return os.NewSyscallError("ftruncate", unix.Ftruncate(fd, size))
	}
	return nil
}

func isZero(b []byte) bool {
	return bytes.Equal(b, zeroBlock[:len(b)])
}

func pwriteAll(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("pwrite", err)
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}
