package unpack

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cargohold/cargohold/internal/faultpoint"
	"github.com/cargohold/cargohold/layout"
	"golang.org/x/sys/unix"
)

// Hard links made while a layer is unpacked (layout.ShareHardlink): a regular file whose header's
// owner, mode, mtime and xattrs equal a candidate's (as the index names them, each checked on the
// candidate's inode) and whose body equals the candidate's bytes, compared while the body is read, is
// not written at all but linked to the candidate. A file that differs is written as usual (the part
// already read and found equal copied from the candidate). Small files (up to KeyPrefix bytes) are
// finished on goroutines of their own (see pendingFiles), since reading the candidate, mostly from
// disk, is what costs; nothing is at such a file's name until its goroutine links or writes it (an
// empty file first, replaced by the link, cost an inode made and freed per linked file), so an entry
// that could meet the name waits for it (settleFor). The candidate of a larger file is read ahead
// while the body is decompressed (equalPrefix).
//
// Never linked, so that no container sees two names of one inode its image did not link (links.go):
// an inode that another name of this layer uses already, or that a committed layer below uses.
// Layers below that are still being unpacked are checked when the layer is committed (LinkEqualFiles
// gives such a file a copy of its own again), and a hard-link entry of the layer to a linked file
// first gives it a copy of its own (adopt): the entry's metadata must never reach another layer's
// inode.

// regularLinked unpacks a regular file with data in a store that shares data by hard links: a hard
// link of an equal file of the store where there is one, else written as usual. Nothing is created at
// the name before that is known.
func (x *extractor) regularLinked(parent int, name, base string, hdr *tar.Header, body *entryBody) error {
	if err := x.clearName(parent, name, base); err != nil {
		return err
	}
	if hdr.Size <= layout.KeyPrefix {
		return x.linkSmall(parent, name, base, hdr, body) // maybe on another goroutine
	}
	fd, key, err := x.linkOrWrite(parent, base, hdr, body)
	if err != nil || fd < 0 {
		return err
	}
	ino, err := finishRegular(fd, parent, base, hdr, true)
	if err != nil {
		return err
	}
	w, err := x.keepWritten(parent, base, ino)
	if err == nil {
		w.checked, w.key, w.meta = true, key, headerMeta(hdr)
	}
	return err
}

// clearName removes what an earlier entry left at parent/base, if anything (as create does).
func (x *extractor) clearName(parent int, name, base string) error {
	var st unix.Stat_t
	err := unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return os.NewSyscallError("fstatat", err)
	}
	return x.remove(parent, name, base)
}

// newFile creates the empty regular file dirFd/base.
func newFile(dirFd int, base string) (int, error) {
	fd, err := unix.Openat(dirFd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	return fd, os.NewSyscallError("openat", err)
}

// linkOrWrite makes parent/base, for a body of more than KeyPrefix bytes, a hard link of an equal file
// of the store if there is one (fd -1), or else a new file holding the body (fd, its metadata still to
// be set). It returns the file's index key.
func (x *extractor) linkOrWrite(parent int, base string, hdr *tar.Header, body *entryBody) (fd int, key layout.FileKey, err error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	cp := bufPool.Get().(*[]byte)
	defer bufPool.Put(cp)
	buf, cmp := *bp, *cp
	first := buf[:layout.KeyPrefix]
	if _, err := io.ReadFull(body, first); err != nil {
		return -1, key, bodyReadError(err)
	}
	meta := headerMeta(hdr)
	key = layout.FileKey{Size: hdr.Size, CRC: body.crc, Meta: meta.Key()}
	for _, c := range x.files.Candidates(key) {
		src, ok := x.linkable(c, key, meta)
		if !ok {
			continue
		}
		fd, done, err := compareWhileReading(parent, base, src.f, body, first, hdr.Size, buf, cmp)
		if err == nil && done && fd < 0 { // equal to the last byte
			var linked bool
			if linked, err = x.linkTo(src, parent, base, key); err == nil && !linked {
				if fd, err = newFile(parent, base); err == nil {
					err = copyFrom(fd, src.f, hdr.Size) // the same bytes, on an inode of its own
				}
			}
		}
		closeQuietly(src.f)
		if err != nil && fd >= 0 {
			closeFd(fd)
		}
		if err != nil || done {
			return fd, key, err
		}
	}
	if fd, err = newFile(parent, base); err != nil {
		return -1, key, err
	}
	w := bodyWriter{fd: fd}
	if err = w.write(first); err == nil {
		err = w.fill(body, hdr.Size, buf)
	}
	if err != nil {
		closeFd(fd)
		return -1, key, err
	}
	return fd, key, nil
}

// compareWhileReading compares the rest of body with src, after checking that src begins with first
// (which aliases buf). If src begins otherwise it returns done false, having read nothing more. Else
// it reads the whole body: equal to src's to the last byte, it returns fd -1 (nothing written);
// otherwise fd is the new file parent/base holding the file's data (the part found equal copied from
// src).
func compareWhileReading(parent int, base string, src *os.File, body io.Reader, first []byte, size int64, buf, cmp []byte) (fd int, done bool, err error) {
	off, diff, err := equalPrefix(src, body, first, size, buf, cmp)
	switch {
	case err != nil:
		return -1, true, err
	case off < 0:
		return -1, false, nil
	case off == size:
		return -1, true, nil
	}
	if fd, err = newFile(parent, base); err != nil {
		return -1, true, err
	}
	// Equal up to off: those bytes come from src (read again, from the page cache by now).
	if err := copyFrom(fd, src, off); err != nil {
		return fd, true, err
	}
	return fd, true, writeRest(fd, off, diff, body, size, buf)
}

// linkSmall makes parent/base (the entry's name, clean) of a small body: a hard link of a candidate
// that holds the same bytes and metadata, else a new file written with its metadata; on another
// goroutine when there are candidates to read. Until that goroutine is done nothing is at the name:
// a later entry that could meet it waits for it first (settleFor).
func (x *extractor) linkSmall(parent int, name, base string, hdr *tar.Header, body *entryBody) error {
	small, err := x.readSmall(parent, base, hdr, body)
	if err != nil {
		return err
	}
	cands := x.files.Candidates(small.key)
	finish := func(dirFd int) error {
		defer putDataBuf(small.buf)
		for _, c := range cands {
			src, ok := x.linkable(c, small.key, small.meta)
			if !ok {
				continue
			}
			linked, err := x.linkIfEqual(src, *small.buf, dirFd, small.real, small.key)
			closeQuietly(src.f)
			if err != nil || linked {
				return err
			}
		}
		return x.writeSmall(dirFd, small.real, *small.buf, small.key, small.meta, hdr)
	}
	if len(cands) == 0 || small.real != name {
		// Nothing to read, or a name reached through a symlink of the layer, which settleFor cannot
		// tell from another: done before the extractor reads on.
		return finish(parent)
	}
	// The entry's directory handle is the extractor's, closed when it moves on: a copy of it.
	dirFd, err := unix.FcntlInt(uintptr(parent), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		putDataBuf(small.buf)
		return os.NewSyscallError("fcntl", err)
	}
	x.addPendingName(name)
	x.goAsync(min(max(hdr.Size, 4096), maxPendingBytes), func() error {
		defer x.donePendingName(name)
		defer closeFd(dirFd)
		return finish(dirFd)
	})
	return nil
}

// addPendingName and donePendingName keep the names of the small files under way (linkSmall).
func (x *extractor) addPendingName(name string) {
	x.pending.mu.Lock()
	defer x.pending.mu.Unlock()
	if x.pendingNames == nil {
		x.pendingNames = map[string]bool{}
	}
	x.pendingNames[name] = true
}

func (x *extractor) donePendingName(name string) {
	x.pending.mu.Lock()
	defer x.pending.mu.Unlock()
	delete(x.pendingNames, name)
}

// settleFor waits for the small files under way (linkSmall) if the entry name (clean) could meet one
// of them: one at that name or at a directory above it. A file under way has nothing at its name yet:
// without this a later entry of the layer would find the name free where it should replace the file
// (the later entry wins), or make a directory where the file should be.
func (x *extractor) settleFor(name string) error {
	x.pending.mu.Lock()
	hit := false
	for p := name; len(x.pendingNames) > 0; {
		if hit = x.pendingNames[p]; hit {
			break
		}
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			break
		}
		p = p[:i]
	}
	x.pending.mu.Unlock()
	if hit {
		return x.settle()
	}
	return nil
}

// settleIfAliased waits for the small files under way if the entry's parent directory dir (its
// handle parent) is reached through a symlink of the layer: then its name says nothing of where it
// is (settleFor).
func (x *extractor) settleIfAliased(parent int, dir string) error {
	x.pending.mu.Lock()
	none := len(x.pendingNames) == 0
	x.pending.mu.Unlock()
	if none {
		return nil
	}
	if dir == "." {
		dir = "" // as realPath says the root
	}
	real, err := x.realPath(parent)
	if err != nil || real == dir {
		return err
	}
	return x.settle()
}

// linkIfEqual links dirFd/name's base to the candidate src if it holds data.
func (x *extractor) linkIfEqual(src linkCandidate, data []byte, dirFd int, name string, key layout.FileKey) (bool, error) {
	bp := smallBufPool.Get().(*[]byte)
	defer smallBufPool.Put(bp)
	for off := 0; off < len(data); off += len(*bp) {
		part := data[off:min(off+len(*bp), len(data))]
		if _, err := src.f.ReadAt((*bp)[:len(part)], int64(off)); err != nil || !bytes.Equal((*bp)[:len(part)], part) {
			return false, nil
		}
	}
	return x.linkNamed(src, dirFd, name, key)
}

// writeSmall writes the small file name (its base in directory dirFd: free) with its data and
// metadata, and keeps it for the index.
func (x *extractor) writeSmall(dirFd int, name string, data []byte, key layout.FileKey, meta layout.FileMeta, hdr *tar.Header) error {
	_, base := splitName(name)
	fd, err := newFile(dirFd, base)
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		closeFd(fd)
		return os.NewSyscallError("fstat", err)
	}
	if err := x.fillSmall(fd, data, nil, hdr); err != nil {
		return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
	}
	x.keep(&written{name: name, ino: st.Ino, checked: true, key: key, meta: meta})
	return nil
}

// linkCandidate is a candidate that linkable opened.
type linkCandidate struct {
	c   layout.Candidate
	f   *os.File
	ino uint64
	// offBelow says that no layer below uses the inode, every layer below committed when it was
	// asked: the check at commit (keepOffBelow) has nothing to add.
	offBelow bool
}

// linkable opens candidate c if this layer may link a file of key and metadata meta to it: a regular
// file of that size and metadata, whose inode no other name of this layer and no committed layer
// below uses.
func (x *extractor) linkable(c layout.Candidate, key layout.FileKey, meta layout.FileMeta) (linkCandidate, bool) {
	src, err := c.Open()
	if err != nil {
		c.Drop() // gone, or not the file the index says
		return linkCandidate{}, false
	}
	srcMeta, st, err := layout.ReadFileMetaStat(src)
	// The host's SELinux label is no part of the image (the unpacker never sets one).
	delete(srcMeta.Xattrs, selinuxXattr)
	lc := linkCandidate{c: c, f: src, ino: st.Ino}
	ok := err == nil && !x.inodeUsed(st.Ino) && srcMeta.Equal(meta)
	if ok {
		// While a layer below is still being unpacked (err), the check at commit decides.
		below, err := x.files.InLayersBelow(key, st.Ino)
		ok, lc.offBelow = err != nil || !below, err == nil && !below
	}
	if !ok {
		closeQuietly(src)
		return linkCandidate{}, false
	}
	return lc, true
}

const selinuxXattr = "security.selinux"

// inodeUsed says whether a name of this layer was linked to inode ino.
func (x *extractor) inodeUsed(ino uint64) bool {
	x.pending.mu.Lock()
	defer x.pending.mu.Unlock()
	return x.linkedTo[ino] != nil
}

// linkTo makes parent/base a hard link of src: see linkNamed.
func (x *extractor) linkTo(src linkCandidate, parent int, base string, key layout.FileKey) (bool, error) {
	name, err := x.realName(parent, base)
	if err != nil {
		return false, err
	}
	return x.linkNamed(src, parent, name, key)
}

// linkNamed makes name (its base in directory dirFd: free) a hard link of src, unless another name of
// the layer took that inode meanwhile or it has no room for another link (EMLINK: then it is no
// candidate any more).
func (x *extractor) linkNamed(src linkCandidate, dirFd int, name string, key layout.FileKey) (bool, error) {
	c, ino := src.c, src.ino
	w := &written{name: name, ino: ino, checked: true, key: key, foreign: true, offBelow: src.offBelow}
	if !x.claim(w) {
		return false, nil
	}
	_, base := splitName(name)
	if err := unix.Linkat(unix.AT_FDCWD, fdPath(int(src.f.Fd())), dirFd, base, unix.AT_SYMLINK_FOLLOW); err != nil {
		x.release(w)
		switch {
		case errors.Is(err, unix.EMLINK):
			c.Drop()
		case errors.Is(err, unix.EEXIST):
			return false, os.NewSyscallError("linkat", err)
		}
		return false, nil // (EXDEV, say: this candidate only)
	}
	x.keep(w)
	x.countShared(key.Size)
	faultpoint.Hit("file-shared")
	return true, nil
}

// claim reserves w's inode for w's name; false if another name of the layer has it.
func (x *extractor) claim(w *written) bool {
	x.pending.mu.Lock()
	defer x.pending.mu.Unlock()
	if x.linkedTo[w.ino] != nil {
		return false
	}
	if x.linkedTo == nil {
		x.linkedTo = map[uint64]*written{}
	}
	x.linkedTo[w.ino] = w
	return true
}

func (x *extractor) release(w *written) {
	x.pending.mu.Lock()
	defer x.pending.mu.Unlock()
	delete(x.linkedTo, w.ino)
}

// adopt gives the file target (in directory dir, linked by this layer to another layer's inode) an
// inode of its own again, a copy, before a hard-link entry of the layer applies its header's metadata
// to it.
func (x *extractor) adopt(dir int, base string, ino uint64) error {
	x.pending.mu.Lock()
	w := x.linkedTo[ino]
	x.pending.mu.Unlock()
	if w == nil {
		return nil // a file of the layer's own
	}
	own, err := replaceByCopy(dir, base)
	if err != nil {
		return err
	}
	x.pending.mu.Lock()
	defer x.pending.mu.Unlock()
	delete(x.linkedTo, ino)
	w.foreign, w.ino = false, own
	x.shared.files--
	x.shared.bytes -= w.key.Size
	return nil
}

// replaceByCopy makes base, in directory dir, a new inode with the same data and metadata (a copy
// beside it, renamed over it), and returns the new inode.
func replaceByCopy(dir int, base string) (uint64, error) {
	tmp := ".cargohold-copy-" + strings.ToLower(rand.Text())
	if err := copyNode(dir, base, dir, tmp); err != nil {
		_ = unix.Unlinkat(dir, tmp, 0)
		return 0, err
	}
	if err := unix.Renameat(dir, tmp, dir, base); err != nil {
		_ = unix.Unlinkat(dir, tmp, 0)
		return 0, os.NewSyscallError("renameat", err)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dir, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return 0, os.NewSyscallError("fstatat", err)
	}
	return st.Ino, nil
}

// adoptTarget adopts the target of a hard-link entry (targetBase in directory dir) if this layer
// linked it to another layer's inode (see adopt).
func (x *extractor) adoptTarget(dir int, base string) error {
	if x.files == nil || x.files.Sharing() != layout.ShareHardlink {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dir, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return os.NewSyscallError("fstatat", err)
	}
	return x.adopt(dir, base, st.Ino)
}

// indexFiles records the layer's regular files with data in the index, once the layer is unpacked,
// but for those a hard-link entry of the layer gave metadata: the hard-link pass compares those
// again when the layer is committed, and records them then.
func (x *extractor) indexFiles() error {
	if x.files == nil || x.files.Sharing() != layout.ShareHardlink {
		return nil
	}
	touched := map[uint64]bool{}
	for _, w := range x.written {
		if w.link {
			touched[w.ino] = true
		}
	}
	for _, w := range x.written {
		if !w.checked || touched[w.ino] {
			continue
		}
		if x.removed { // a later entry may have replaced it
			if st, err := statReal(x.rootFd, w.name); err != nil || st.Ino != w.ino {
				continue
			}
		}
		if err := x.files.Add(w.name, w.key); err != nil {
			return err
		}
	}
	return nil
}
