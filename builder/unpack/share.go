package unpack

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"errors"
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
//   - Reflinks. After the first KeyPrefix bytes of a file the index names the store's files that may
//     equal it; the rest of the body is compared with the first of them while it is read, instead of
//     written. Equal to the last byte: the new file, still empty, clones the candidate (FICLONE) and
//     then gets its own owner, mode, xattrs and times as any file does. A difference: the equal part
//     is cloned from the candidate (FICLONERANGE) and the rest written. A candidate that differs in
//     its first bytes is skipped. Only bytes compared equal are ever shared.
//   - Hard links. Files are written as usual; when the whole layer is there (so no later entry can
//     change an inode any more), each inode of the layer, with all its names (a tar hard-link group
//     moves as a group), becomes the store's equal inode: equal bytes, owner, mode, mtime and every
//     xattr, compared on the two inodes. Every name is linked beside its old one first, then renamed
//     over it; an inode that has no room for more links (EMLINK) is skipped, and when no candidate
//     is left the layer's own inode stays: a new copy, itself a candidate from then on.

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

// linkEqualFiles makes each inode of the layer (all its names) a hard link of an equal file of the
// store, where there is one (ShareHardlink), and records every inode for the files after it.
func (x *extractor) linkEqualFiles() error {
	groups, err := x.linkGroups()
	if err != nil {
		return err
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	for _, g := range groups {
		if err := x.linkGroup(g, *bp); err != nil {
			return fmt.Errorf("sharing %q: %w", g.names[0], err)
		}
	}
	return nil
}

// linkGroup is one inode of the layer with its names.
type linkGroup struct {
	names []string // in the order of the layer's entries
	ino   uint64
	size  int64
}

// linkGroups gathers the layer's regular files by inode, in the order of the first name of each. An
// inode with a name the layer no longer has (an entry replaced it) or with names elsewhere is left
// out, and so are empty files (nothing to share).
func (x *extractor) linkGroups() ([]*linkGroup, error) {
	var groups []*linkGroup
	byIno := map[uint64]*linkGroup{}
	nlinks := map[uint64]uint64{}
	for _, w := range x.written {
		st, err := x.statReal(w.name)
		if err != nil || st.Ino != w.ino || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size == 0 {
			continue
		}
		g := byIno[st.Ino]
		if g == nil {
			g = &linkGroup{ino: st.Ino, size: st.Size}
			byIno[st.Ino] = g
			groups = append(groups, g)
		}
		if !containsString(g.names, w.name) {
			g.names = append(g.names, w.name)
		}
		nlinks[st.Ino] = uint64(st.Nlink)
	}
	complete := groups[:0]
	for _, g := range groups {
		if uint64(len(g.names)) == nlinks[g.ino] {
			complete = append(complete, g)
		}
	}
	return complete, nil
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// linkGroup links g's names to an equal inode of the store, if there is one with room for them, and
// records g's inode in the index either way.
func (x *extractor) linkGroup(g *linkGroup, buf []byte) error {
	own, err := x.openReal(g.names[0])
	if err != nil {
		return err
	}
	defer closeQuietly(own)
	meta, err := layout.ReadFileMeta(own)
	if err != nil {
		return err
	}
	crc, err := prefixCRC(own, g.size, buf)
	if err != nil {
		return err
	}
	key := layout.FileKey{Size: g.size, CRC: crc, Meta: meta.Key()}
	for _, c := range x.files.Candidates(key) {
		src, err := c.Open()
		if err != nil {
			c.Drop()
			continue
		}
		linked := false
		if mayLink(own, src, g, meta, buf) {
			err = x.relink(g.names, src)
			linked = err == nil
		}
		closeQuietly(src)
		var lerr *linkError
		switch {
		case errors.As(err, &lerr) && errors.Is(lerr.err, unix.EMLINK):
			// No room for the group: the next candidate, or at the end the layer's own inode (a new
			// copy). An inode that cannot take even one more link is no candidate any more.
			if len(g.names) == 1 {
				c.Drop()
			}
			continue
		case errors.As(err, &lerr):
			continue // cannot link to this one (another filesystem, say)
		case err != nil:
			return err
		}
		if linked {
			x.shared.files++
			x.shared.bytes += g.size
			faultpoint.Hit("file-shared")
			break
		}
	}
	return x.files.Add(g.names[0], key)
}

// mayLink says whether own (the layer's inode of group g, with metadata meta) and src may be one inode:
// two inodes, equal in metadata and every byte.
func mayLink(own, src *os.File, g *linkGroup, meta layout.FileMeta, buf []byte) bool {
	var st unix.Stat_t
	if unix.Fstat(int(src.Fd()), &st) != nil || st.Ino == g.ino {
		return false
	}
	srcMeta, err := layout.ReadFileMeta(src)
	if err != nil || !srcMeta.Equal(meta) {
		return false
	}
	equal, err := layout.EqualContent(own, src, g.size, buf)
	return err == nil && equal
}

// linkError is a failed linkat of relink: nothing was changed.
type linkError struct{ err error }

func (e *linkError) Error() string { return "linkat: " + e.err.Error() }
func (e *linkError) Unwrap() error { return e.err }

// relink makes every name in names a name of src's inode, or (a *linkError) none: a new link for each
// beside it first, then each renamed over its name.
func (x *extractor) relink(names []string, src *os.File) error {
	type pending struct {
		dirFd     int
		tmp, base string
	}
	var done []pending
	defer func() {
		for _, p := range done {
			closeFd(p.dirFd)
		}
	}()
	for _, name := range names {
		dir, base := splitName(name)
		dirFd, err := x.openRealDir(dir)
		if err != nil {
			return err
		}
		tmp := ".cargohold-link-" + strings.ToLower(rand.Text())
		if err := unix.Linkat(unix.AT_FDCWD, fdPath(int(src.Fd())), dirFd, tmp, unix.AT_SYMLINK_FOLLOW); err != nil {
			closeFd(dirFd)
			for _, p := range done {
				_ = unix.Unlinkat(p.dirFd, p.tmp, 0) // our own new name: the old ones are untouched
			}
			return &linkError{err}
		}
		done = append(done, pending{dirFd, tmp, base})
	}
	for _, p := range done {
		if err := unix.Renameat(p.dirFd, p.tmp, p.dirFd, p.base); err != nil {
			return os.NewSyscallError("renameat", err)
		}
	}
	return nil
}

// realHow resolves the names the hard-link pass recorded: below the root, through no symlink (a
// later entry may have put one where a directory was).
var realHow = unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
	Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}

func (x *extractor) openRealDir(dir string) (int, error) {
	if dir == "." {
		dir = ""
	}
	how := realHow
	fd, err := unix.Openat2(x.rootFd, "./"+dir, &how)
	return fd, os.NewSyscallError("openat2", err)
}

func (x *extractor) statReal(name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	dir, base := splitName(name)
	dirFd, err := x.openRealDir(dir)
	if err != nil {
		return st, err
	}
	defer closeFd(dirFd)
	return st, unix.Fstatat(dirFd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
}

func (x *extractor) openReal(name string) (*os.File, error) {
	dir, base := splitName(name)
	dirFd, err := x.openRealDir(dir)
	if err != nil {
		return nil, err
	}
	defer closeFd(dirFd)
	fd, err := unix.Openat(dirFd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NOATIME, 0)
	if err != nil {
		return nil, os.NewSyscallError("openat", err)
	}
	return os.NewFile(uintptr(fd), name), nil
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
