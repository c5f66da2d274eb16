package unpack

import (
	"archive/tar"
	"bytes"
	"fmt"
	"hash/crc64"
	"io"
	"os"
	"strings"

	"github.com/cargohold/cargohold/internal/faultpoint"
	"github.com/cargohold/cargohold/layout"
	"github.com/vbatts/tar-split/tar/storage"
	"go.podman.io/storage/pkg/archive"
	"golang.org/x/sys/unix"
)

// Sharing the data of a layer's files with equal files the store already holds (Options.Files; the
// store's index of files, how it is kept and why it is only a hint: layout/fileindex.go). Two ways,
// as the store says (layout.Sharing):
//
//   - Reflinks (here). After the first KeyPrefix bytes of a file the index names the store's files that
//     may equal it; the rest of the body is compared with the first of them while it is read, instead of
//     written. Equal to the last byte: the new file, still empty, clones the candidate (FICLONE) and
//     then gets its own owner, mode, xattrs and times as any file does. A difference: the equal part
//     is cloned from the candidate (FICLONERANGE) and the rest written. A candidate that differs in
//     its first bytes is skipped. Only bytes compared equal are ever shared, and every file keeps its
//     own inode: readers cannot tell.
//   - Hard links (links.go). Files are written as usual, and LinkEqualFiles links them when the layer
//     is committed.

// written is a regular file of the layer, by one of its names, for the hard-link pass.
type written struct {
	name string // relative to the root, through no symlink
	ino  uint64
}

// shareStats count what a layer shared.
type shareStats struct {
	files int   // files whose data is wholly another file's
	bytes int64 // bytes not written thanks to that (partly shared files included)
}

// keepRealName remembers a regular file just written (parent/base) for sharing: with reflinks its key
// goes into the index at once, with hard links it waits for the end of the layer.
func (x *extractor) keepRealName(parent int, base string, ino uint64, key layout.FileKey) error {
	dir, err := x.realPath(parent)
	if err != nil {
		return err
	}
	name := base
	if dir != "" {
		name = dir + "/" + base
	}
	if x.files.Sharing() == layout.ShareHardlink {
		x.written = append(x.written, written{name: name, ino: ino})
		return nil
	}
	return x.files.Add(name, key)
}

// keepLink remembers a hard link (parent/base, of stat st) the layer made to a regular file it wrote:
// the hard-link pass moves the whole group.
func (x *extractor) keepLink(parent int, base string, st *unix.Stat_t) error {
	if x.files == nil || x.files.Sharing() != layout.ShareHardlink || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil
	}
	return x.keepRealName(parent, base, st.Ino, layout.FileKey{})
}

// headerMeta is the metadata the unpacker gives a file of hdr, as the index keys it.
func headerMeta(hdr *tar.Header) layout.FileMeta {
	m := layout.FileMeta{UID: uint32(hdr.Uid), GID: uint32(hdr.Gid), Mode: mode(hdr), Mtime: chtimesSpec(hdr.ModTime)}
	for key, value := range hdr.PAXRecords {
		if attr, ok := strings.CutPrefix(key, archive.PaxSchilyXattr); ok && value != "" && !ignoredXattrs[attr] {
			if m.Xattrs == nil {
				m.Xattrs = map[string][]byte{}
			}
			m.Xattrs[attr] = []byte(value)
		}
	}
	return m
}

// cloneOrWrite fills the new, empty file fd with the size bytes of body: shared with an equal file of
// the store (reflinks) where there is one, written otherwise. It returns the file's index key (no Meta).
func (x *extractor) cloneOrWrite(fd int, body *entryBody, size int64) (layout.FileKey, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	cp := bufPool.Get().(*[]byte)
	defer bufPool.Put(cp)
	buf, cmp := *bp, *cp
	first := buf[:min(size, layout.KeyPrefix)]
	if _, err := io.ReadFull(body, first); err != nil {
		return layout.FileKey{}, bodyReadError(err)
	}
	key := layout.FileKey{Size: size, CRC: body.crc} // the crc of what was read so far: first
	for _, c := range x.files.Candidates(key) {
		src, err := c.Open()
		if err != nil {
			c.Drop() // gone, or not the file the index says
			continue
		}
		done, err := x.follow(fd, src, body, first, size, buf, cmp)
		closeQuietly(src)
		if done || err != nil {
			return key, err
		}
	}
	w := bodyWriter{fd: fd}
	if err := w.write(first); err != nil {
		return key, err
	}
	return key, w.fill(body, size, buf)
}

// follow shares what it can of src with the file fd being unpacked from body, whose first bytes
// (first, aliasing buf) were read already. If src begins otherwise it returns false, having read
// nothing more; else it handles the whole body and returns true.
func (x *extractor) follow(fd int, src *os.File, body io.Reader, first []byte, size int64, buf, cmp []byte) (bool, error) {
	if _, err := src.ReadAt(cmp[:len(first)], 0); err != nil || !bytes.Equal(first, cmp[:len(first)]) {
		return false, nil
	}
	for off := int64(len(first)); off < size; {
		chunk := buf[:min(int64(len(buf)), size-off)]
		if _, err := io.ReadFull(body, chunk); err != nil {
			return true, bodyReadError(err)
		}
		if _, err := src.ReadAt(cmp[:len(chunk)], off); err != nil || !bytes.Equal(chunk, cmp[:len(chunk)]) {
			// Equal up to off (a multiple of the chunk size): that part is src's, the rest the file's own.
			if err := shareRange(fd, src, off); err != nil {
				return true, err
			}
			x.shared.bytes += off
			w := bodyWriter{fd: fd, off: off, end: off}
			if err := w.write(chunk); err != nil {
				return true, err
			}
			return true, w.fill(body, size, buf)
		}
		off += int64(len(chunk))
	}
	return true, x.shareWhole(fd, src, size)
}

// shareWhole makes the empty file fd a clone of src, every byte of which equals what fd should hold.
func (x *extractor) shareWhole(fd int, src *os.File, size int64) error {
	if err := unix.IoctlFileClone(fd, int(src.Fd())); err != nil {
		// (this candidate only: another filesystem, say) The bytes are src's all the same.
		if err := unix.Ftruncate(fd, 0); err != nil {
			return os.NewSyscallError("ftruncate", err)
		}
		return copyFrom(fd, src, size)
	}
	x.shared.files++
	x.shared.bytes += size
	faultpoint.Hit("file-shared")
	return nil
}

// shareRange makes the first n bytes of the empty file fd the first n bytes of src.
func shareRange(fd int, src *os.File, n int64) error {
	r := unix.FileCloneRange{Src_fd: int64(src.Fd()), Src_length: uint64(n)}
	if err := unix.IoctlFileCloneRange(fd, &r); err == nil {
		return nil
	}
	if err := unix.Ftruncate(fd, 0); err != nil {
		return os.NewSyscallError("ftruncate", err)
	}
	return copyFrom(fd, src, n)
}

// copyFrom writes the first n bytes of src into the empty file fd (holes stay holes).
func copyFrom(fd int, src *os.File, n int64) error {
	if err := writeBody(fd, io.NewSectionReader(src, 0, n), n); err != nil {
		return fmt.Errorf("copying the data of %s: %w", src.Name(), err)
	}
	return nil
}

// prefixCRC is the crc64 of the first min(size, KeyPrefix) bytes of f, as FileKey.CRC.
func prefixCRC(f *os.File, size int64, buf []byte) (uint64, error) {
	b := buf[:min(size, layout.KeyPrefix)]
	if _, err := f.ReadAt(b, 0); err != nil {
		return 0, err
	}
	return crc64.Checksum(b, storage.CRCTable), nil
}

// cloneOrWrite reads a file's first KeyPrefix bytes into one copy buffer.
var _ [copyBufSize - layout.KeyPrefix]byte
