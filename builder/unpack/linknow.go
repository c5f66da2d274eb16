package unpack

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
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
// disk, is what costs.
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
		// The file, empty, is there before the extractor reads on: later entries find the name taken.
		fd, err := newFile(parent, base)
		if err != nil {
			return err
		}
		return x.linkSmall(fd, parent, base, hdr, body) // finishes the file, maybe on another goroutine
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
		src, ino, ok := x.linkable(c, key, meta)
		if !ok {
			continue
		}
		fd, done, err := x.compareWhileReading(parent, base, src, body, first, hdr.Size, buf, cmp)
		if err == nil && done && fd < 0 { // equal to the last byte
			var linked bool
			if linked, err = x.linkTo(c, src, ino, parent, base, key); err == nil && !linked {
				if fd, err = newFile(parent, base); err == nil {
					err = copyFrom(fd, src, hdr.Size) // the same bytes, on an inode of its own
				}
			}
		}
		closeQuietly(src)
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
func (x *extractor) compareWhileReading(parent int, base string, src *os.File, body io.Reader, first []byte, size int64, buf, cmp []byte) (fd int, done bool, err error) {
	if _, err := src.ReadAt(cmp[:len(first)], 0); err != nil || !bytes.Equal(first, cmp[:len(first)]) {
		return -1, false, nil
	}
	for off := int64(len(first)); off < size; {
		chunk := buf[:min(int64(len(buf)), size-off)]
		if _, err := io.ReadFull(body, chunk); err != nil {
			return -1, true, bodyReadError(err)
		}
		if _, err := src.ReadAt(cmp[:len(chunk)], off); err != nil || !bytes.Equal(chunk, cmp[:len(chunk)]) {
			if fd, err = newFile(parent, base); err != nil {
				return -1, true, err
			}
			// Equal up to off: those bytes come from src (read again, from the page cache by now).
			if err := copyFrom(fd, src, off); err != nil {
				return fd, true, err
			}
			w := bodyWriter{fd: fd, off: off, end: off}
			if err := w.write(chunk); err != nil {
				return fd, true, err
			}
			return fd, true, w.fill(body, size, buf)
		}
		off += int64(len(chunk))
	}
	return -1, true, nil
}

// linkSmall finishes the new, empty regular file fd (parent/base) of a small body: replaced by a hard
// link of a candidate that holds the same bytes and metadata, else written with its metadata; on
// another goroutine when there are candidates to read. It owns fd.
func (x *extractor) linkSmall(fd, parent int, base string, hdr *tar.Header, body *entryBody) error {
	data := make([]byte, hdr.Size)
	if _, err := io.ReadFull(body, data); err != nil {
		closeFd(fd)
		return bodyReadError(err)
	}
	meta := headerMeta(hdr)
	key := layout.FileKey{Size: hdr.Size, CRC: body.crc, Meta: meta.Key()}
	name, err := x.realName(parent, base)
	if err != nil {
		closeFd(fd)
		return err
	}
	cands := x.files.Candidates(key)
	if len(cands) == 0 {
		return x.writeSmall(fd, name, data, key, meta, hdr) // nothing to read: no need to wait for anything
	}
	// The entry's directory handle is the extractor's, closed when it moves on: a copy of it.
	dirFd, err := unix.FcntlInt(uintptr(parent), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		closeFd(fd)
		return os.NewSyscallError("fcntl", err)
	}
	x.goAsync(min(max(hdr.Size, 4096), maxPendingBytes), func() error {
		defer closeFd(dirFd)
		for _, c := range cands {
			src, ino, ok := x.linkable(c, key, meta)
			if !ok {
				continue
			}
			linked, err := x.linkIfEqual(c, src, ino, data, dirFd, name, key)
			closeQuietly(src)
			if err != nil || linked {
				closeFd(fd)
				return err
			}
		}
		return x.writeSmall(fd, name, data, key, meta, hdr)
	})
	return nil
}

// linkIfEqual links dirFd/name's base to src (candidate c, inode ino) if src holds data.
func (x *extractor) linkIfEqual(c layout.Candidate, src *os.File, ino uint64, data []byte, dirFd int, name string, key layout.FileKey) (bool, error) {
	bp := smallBufPool.Get().(*[]byte)
	defer smallBufPool.Put(bp)
	for off := 0; off < len(data); off += len(*bp) {
		part := data[off:min(off+len(*bp), len(data))]
		if _, err := src.ReadAt((*bp)[:len(part)], int64(off)); err != nil || !bytes.Equal((*bp)[:len(part)], part) {
			return false, nil
		}
	}
	return x.linkNamed(c, src, ino, dirFd, name, key, true)
}

// writeSmall writes the small, empty file fd (name) with its data and metadata, closes it, and keeps
// it for the index.
func (x *extractor) writeSmall(fd int, name string, data []byte, key layout.FileKey, meta layout.FileMeta, hdr *tar.Header) error {
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

// linkable opens candidate c if this layer may link a file of key and metadata meta to it: a regular
// file of that size and metadata, whose inode no other name of this layer and no committed layer
// below uses. It returns the open file and its inode.
func (x *extractor) linkable(c layout.Candidate, key layout.FileKey, meta layout.FileMeta) (*os.File, uint64, bool) {
	src, err := c.Open()
	if err != nil {
		c.Drop() // gone, or not the file the index says
		return nil, 0, false
	}
	srcMeta, st, err := layout.ReadFileMetaStat(src)
	// The host's SELinux label is no part of the image (the unpacker never sets one).
	delete(srcMeta.Xattrs, selinuxXattr)
	ok := err == nil && !x.inodeUsed(st.Ino) && srcMeta.Equal(meta)
	if ok {
		// While a layer below is still being unpacked (err), the check at commit decides.
		below, err := x.files.InLayersBelow(key, st.Ino)
		ok = err != nil || !below
	}
	if !ok {
		closeQuietly(src)
		return nil, 0, false
	}
	return src, st.Ino, true
}

const selinuxXattr = "security.selinux"

// linkTmpPrefix starts the temporary names of new hard links (a layer's own file by such a name only
// makes the link fail: the file is then written).
var linkTmpPrefix = ".cargohold-link-" + strconv.Itoa(os.Getpid()) + "-"

// inodeUsed says whether a name of this layer was linked to inode ino.
func (x *extractor) inodeUsed(ino uint64) bool {
	x.pending.mu.Lock()
	defer x.pending.mu.Unlock()
	return x.linkedTo[ino] != nil
}

// linkTo makes parent/base a hard link of src: see linkNamed.
func (x *extractor) linkTo(c layout.Candidate, src *os.File, ino uint64, parent int, base string, key layout.FileKey) (bool, error) {
	name, err := x.realName(parent, base)
	if err != nil {
		return false, err
	}
	return x.linkNamed(c, src, ino, parent, name, key, false)
}

// linkNamed makes name (its base in directory dirFd: free, or with replace an empty file of the
// layer's, replaced) a hard link of src (candidate c, inode ino), unless another name of the layer took
// that inode meanwhile or it has no room for another link (EMLINK: then it is no candidate any more).
func (x *extractor) linkNamed(c layout.Candidate, src *os.File, ino uint64, dirFd int, name string, key layout.FileKey, replace bool) (bool, error) {
	w := &written{name: name, ino: ino, checked: true, key: key, foreign: true}
	if !x.claim(w) {
		return false, nil
	}
	_, base := splitName(name)
	at := base
	if replace { // a new name beside it, then renamed over it
		at = linkTmpPrefix + strconv.FormatInt(x.tmpNames.Add(1), 10)
	}
	if err := unix.Linkat(unix.AT_FDCWD, fdPath(int(src.Fd())), dirFd, at, unix.AT_SYMLINK_FOLLOW); err != nil {
		x.release(w)
		switch {
		case errors.Is(err, unix.EMLINK):
			c.Drop()
		case errors.Is(err, unix.EEXIST) && !replace:
			return false, os.NewSyscallError("linkat", err)
		}
		return false, nil // (EXDEV, say, or a layer's own file by the temporary name: this candidate only)
	}
	if replace {
		if err := unix.Renameat(dirFd, at, dirFd, base); err != nil {
			x.release(w)
			_ = unix.Unlinkat(dirFd, at, 0)
			return false, os.NewSyscallError("renameat", err)
		}
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
