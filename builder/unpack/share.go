package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/bits"
	"os"
	"strings"
	"sync"

	"github.com/cargohold/cargohold/internal/faultpoint"
	"github.com/cargohold/cargohold/layout"
	"go.podman.io/storage/pkg/archive"
	"golang.org/x/sync/semaphore"
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
//     own inode: readers cannot tell. A file of at most KeyPrefix bytes is read whole first and then
//     compared, cloned or written on a goroutine of its own (shareSmall), so that many candidates are
//     read at once.
//     The comparison is ours, not FIDEDUPERANGE's (which compares in the kernel and remaps only
//     equal bytes): that ioctl needs both files to hold the bytes already, so the new file would be
//     written first, and XFS writes a destination's dirty pages back before it remaps them; then
//     the kernel reads both files, compares, and frees the blocks just written. Reading the
//     candidate once here costs less, and is as safe: nothing but bytes read from the candidate
//     and found equal to the body is ever cloned (TestIndexThatLies, TestReflinkSmallFiles...).
//   - Hard links (links.go). A file equal to one the index names, in metadata (compared with the
//     header's) and every byte (compared while the body is read, instead of written), becomes a hard
//     link of it while the layer is unpacked; LinkEqualFiles checks those links again and moves tar
//     hard-link groups when the layer is committed.

// written is a regular file of the layer with data, by one of its names, for the index and the
// hard-link pass.
type written struct {
	name string // relative to the root, through no symlink
	ino  uint64
	link bool // a hard-link entry's name (keepLink): its header's metadata was applied to the inode

	// For a file entry (not a hard link to one): its key and metadata as its header gave them.
	checked bool
	key     layout.FileKey
	meta    layout.FileMeta
	// foreign says that the name was made a hard link of another layer's inode (linkTo); offBelow
	// that no layer below uses that inode (see linkCandidate).
	foreign, offBelow bool
	// cands are the candidates the hard-link pass found equal to it (reverify).
	cands []verified
}

// shareStats count what a layer shared.
type shareStats struct {
	files int   // files whose data is wholly another file's
	bytes int64 // bytes not written thanks to that (partly shared files included)
}

// keepRealName records a regular file just written (parent/base) in the index, with its key (reflinks).
func (x *extractor) keepRealName(parent int, base string, key layout.FileKey) error {
	name, err := x.realName(parent, base)
	if err != nil {
		return err
	}
	return x.files.Add(name, key)
}

// keepLink remembers a hard link (parent/base, of stat st) the layer made to a regular file it wrote:
// the hard-link pass moves the whole group.
func (x *extractor) keepLink(parent int, base string, st *unix.Stat_t) error {
	if x.files == nil || x.files.Sharing() != layout.ShareHardlink || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil
	}
	w, err := x.keepWritten(parent, base, st.Ino)
	if err == nil {
		w.link = true
	}
	return err
}

func (x *extractor) keepWritten(parent int, base string, ino uint64) (*written, error) {
	name, err := x.realName(parent, base)
	if err != nil {
		return nil, err
	}
	w := &written{name: name, ino: ino}
	x.keep(w)
	return w, nil
}

// keep adds w to the files the layer wrote (from any goroutine).
func (x *extractor) keep(w *written) {
	x.pending.mu.Lock()
	defer x.pending.mu.Unlock()
	x.written = append(x.written, w)
}

// verifyCands lists the candidates of w's key that w (own) equals in metadata and every byte.
func verifyCands(files *layout.LayerFiles, w *written, own *os.File, buf []byte) []verified {
	var cands []verified
	for _, c := range files.Candidates(w.key) {
		src, err := c.Open()
		if err != nil {
			c.Drop() // gone, or not the file the index says
			continue
		}
		if ino, ok := sameFile(w, own, src, buf); ok {
			cands = append(cands, verified{c, ino})
		}
		closeQuietly(src)
	}
	return cands
}

// sameFile says whether own (w) and src may be one inode: two inodes, equal in metadata and every
// byte. It returns src's inode.
func sameFile(w *written, own, src *os.File, buf []byte) (uint64, bool) {
	var st unix.Stat_t
	if unix.Fstat(int(src.Fd()), &st) != nil || st.Ino == w.ino {
		return 0, false
	}
	if srcMeta, err := layout.ReadFileMeta(src); err != nil || !srcMeta.Equal(w.meta) {
		return 0, false
	}
	equal, err := layout.EqualContent(own, src, w.key.Size, buf)
	return st.Ino, err == nil && equal
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
	off, diff, err := equalPrefix(src, body, first, size, buf, cmp)
	switch {
	case err != nil:
		return true, err
	case off < 0:
		return false, nil
	case off == size:
		return true, x.shareWhole(fd, src, size)
	}
	// Equal up to off (a multiple of the chunk size): that part is src's, the rest the file's own.
	if err := shareRange(fd, src, off); err != nil {
		return true, err
	}
	x.pending.mu.Lock()
	x.shared.bytes += off
	x.pending.mu.Unlock()
	return true, writeRest(fd, off, diff, body, size, buf)
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
	x.countShared(size)
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

// cloneOrWrite reads a file's first KeyPrefix bytes into one copy buffer.
var _ [copyBufSize - layout.KeyPrefix]byte

// Small files (up to KeyPrefix bytes) whose index key names candidates are finished on goroutines of
// their own while the extractor reads on: comparing a file with a candidate means reading the
// candidate, which is often on disk only (last night's layer), and reading many at once is what disks
// (and network filesystems) do fast. Each such file holds its descriptor and its data until it is done,
// so at most maxPendingFiles and maxPendingBytes of them are under way. Whatever may depend on one of
// them (an entry that removes or links a path, a whiteout, the end of the layer) waits for all first:
// settle.
const (
	maxPendingFiles = 32
	maxPendingBytes = 8 << 20
)

type pendingFiles struct {
	wg    sync.WaitGroup
	files chan struct{}       // a slot per file under way
	bytes *semaphore.Weighted // their data
	mu    sync.Mutex
	err   error // the first failure
}

// settle waits until no file is under way and returns the first failure of one.
func (x *extractor) settle() error {
	x.pending.wg.Wait()
	x.pending.mu.Lock()
	defer x.pending.mu.Unlock()
	return x.pending.err
}

// shareSmall finishes the new regular file fd (parent/base, empty) of a small body: its data shared
// with a candidate that the index names and that holds the same bytes, else written, then its
// metadata. It owns fd.
func (x *extractor) shareSmall(fd, parent int, base string, hdr *tar.Header, body *entryBody) error {
	small, err := x.readSmall(parent, base, hdr, body)
	if err != nil {
		closeFd(fd)
		return err
	}
	cands := x.files.Candidates(small.key)
	finish := func() error {
		defer putDataBuf(small.buf)
		err := x.fillSmall(fd, *small.buf, cands, hdr)
		if err == nil {
			err = x.files.Add(small.real, small.key)
		}
		if err != nil {
			return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
		return nil
	}
	if len(cands) == 0 {
		return finish() // nothing to read: no need to wait for anything
	}
	x.goAsync(min(max(hdr.Size, 4096), maxPendingBytes), finish)
	return nil
}

// smallBody is a small file's body read whole (into buf, from the pool: putDataBuf it), with what
// finding its candidates takes: its index key and metadata, and its name through no symlink.
type smallBody struct {
	buf  *[]byte
	key  layout.FileKey
	meta layout.FileMeta
	real string
}

// readSmall reads the whole body of the small file parent/base (shareSmall, linkSmall).
func (x *extractor) readSmall(parent int, base string, hdr *tar.Header, body *entryBody) (smallBody, error) {
	bp := getDataBuf(hdr.Size)
	if _, err := io.ReadFull(body, *bp); err != nil {
		putDataBuf(bp)
		return smallBody{}, bodyReadError(err)
	}
	meta := headerMeta(hdr)
	real, err := x.realName(parent, base)
	if err != nil {
		putDataBuf(bp)
		return smallBody{}, err
	}
	return smallBody{buf: bp, key: layout.FileKey{Size: hdr.Size, CRC: body.crc, Meta: meta.Key()}, meta: meta, real: real}, nil
}

// goAsync runs f on a goroutine of its own once a slot and weight bytes are free (see settle).
func (x *extractor) goAsync(weight int64, f func() error) {
	p := &x.pending
	if p.files == nil {
		p.files, p.bytes = make(chan struct{}, maxPendingFiles), semaphore.NewWeighted(maxPendingBytes)
	}
	p.files <- struct{}{}
	_ = p.bytes.Acquire(context.Background(), weight) // a background context never ends
	p.wg.Add(1)
	go func() {
		defer func() {
			p.bytes.Release(weight)
			<-p.files
			p.wg.Done()
		}()
		if err := f(); err != nil {
			p.mu.Lock()
			if p.err == nil {
				p.err = err
			}
			p.mu.Unlock()
		}
	}()
}

// fillSmall gives the empty file fd the bytes data, a clone of the first candidate that holds them
// if any, then the header's owner, mode, xattrs and times, and closes it.
func (x *extractor) fillSmall(fd int, data []byte, cands []layout.Candidate, hdr *tar.Header) error {
	var err error
	if !x.cloneEqual(fd, data, cands) {
		w := bodyWriter{fd: fd}
		if err = w.write(data); err == nil && w.end < hdr.Size {
			err = os.NewSyscallError("ftruncate", unix.Ftruncate(fd, hdr.Size))
		}
	}
	if err == nil {
		err = setOwnerModeFd(fd, hdr)
	}
	if err == nil {
		err = setXattrs(hdr, func(attr string, value []byte) error { return unix.Fsetxattr(fd, attr, value, 0) })
	}
	if err == nil { // through the descriptor: the directory handle of the entry is gone by now
		ts := []unix.Timespec{chtimesSpec(accessTime(hdr)), chtimesSpec(hdr.ModTime)}
		err = os.NewSyscallError("utimensat", unix.UtimesNanoAt(unix.AT_FDCWD, fdPath(fd), ts, 0))
	}
	if cerr := unix.Close(fd); err == nil {
		err = os.NewSyscallError("close", cerr)
	}
	return err
}

// cloneEqual makes the empty file fd a clone of the first candidate whose bytes are data.
func (x *extractor) cloneEqual(fd int, data []byte, cands []layout.Candidate) bool {
	if len(cands) == 0 {
		return false
	}
	bp := getDataBuf(int64(len(data)))
	defer putDataBuf(bp)
	buf := *bp
	for _, c := range cands {
		src, err := c.Open()
		if err != nil {
			c.Drop()
			continue
		}
		_, err = src.ReadAt(buf, 0)
		equal := err == nil && bytes.Equal(buf, data)
		if equal && unix.IoctlFileClone(fd, int(src.Fd())) != nil {
			equal = false // (this candidate only: another filesystem, say)
		}
		closeQuietly(src)
		if equal {
			x.countShared(int64(len(data)))
			faultpoint.Hit("file-shared")
			return true
		}
	}
	return false
}

// Small files' data (shareSmall) and their candidates' bytes to compare it with live in buffers from
// pools by size (powers of two from 4 KiB to KeyPrefix), not in two new slices per file: a layer of
// thousands of small files (a nightly Python layer: 5,500 files, 120 MiB) then allocates a few dozen
// buffers instead of twice its size, which the garbage collector had to clear and collect.
const (
	minDataBufBits = 12
	maxDataBufBits = 20 // KeyPrefix
)

var _ [layout.KeyPrefix - 1<<maxDataBufBits]byte // (KeyPrefix is exactly 1 << maxDataBufBits)
var _ [1<<maxDataBufBits - layout.KeyPrefix]byte

var dataBufs [maxDataBufBits - minDataBufBits + 1]sync.Pool

// getDataBuf returns a buffer of n bytes (0 < n <= KeyPrefix), of whatever content; putDataBuf takes
// it back.
func getDataBuf(n int64) *[]byte {
	class := max(bits.Len64(uint64(n-1)), minDataBufBits) - minDataBufBits
	if bp, ok := dataBufs[class].Get().(*[]byte); ok {
		*bp = (*bp)[:n]
		return bp
	}
	b := make([]byte, n, 1<<(class+minDataBufBits))
	return &b
}

func putDataBuf(bp *[]byte) {
	dataBufs[bits.Len64(uint64(cap(*bp)-1))-minDataBufBits].Put(bp)
}

// countShared counts a file whose size bytes are shared (from any goroutine).
func (x *extractor) countShared(size int64) {
	x.pending.mu.Lock()
	defer x.pending.mu.Unlock()
	x.shared.files++
	x.shared.bytes += size
}

// realName is parent/base relative to the root, through no symlink.
func (x *extractor) realName(parent int, base string) (string, error) {
	dir, err := x.realPath(parent)
	if err != nil || dir == "" {
		return base, err
	}
	return dir + "/" + base, nil
}
