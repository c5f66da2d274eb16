package layout

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

// Shared file data (issue 18). Nightly rebuilds of one image hold mostly the same files; a store keeps
// one copy of their data where it can:
//   - reflinks (ShareReflink): a new file whose bytes equal a file the store holds shares its extents
//     (FICLONE) and keeps its own inode, owner, mode, times and xattrs; readers see nothing of it. The
//     default wherever the store's filesystem can (XFS with reflink=1, btrfs, NFS 4.2 exports of those).
//   - hard links (ShareHardlink, asked for with DedupHardlink): a file equal to one in the store in
//     bytes, owner, mode, every xattr and mtime becomes another name of its inode; readers see the link
//     count and inode number shared.
// Candidates are found through an index of every layer's files by size and content checksum
// (fileindex.go); the index is only a hint: the unpacker compares every byte (and for hard links every
// attribute) of a candidate before sharing anything with it.

// Dedup says whether and how a store shares the data of equal files across its layers.
type Dedup string

const (
	// DedupAuto shares extents where the store's filesystem supports reflinks, and nothing elsewhere
	// ("" means the same).
	DedupAuto Dedup = "auto"
	// DedupOff writes every file's data.
	DedupOff Dedup = "off"
	// DedupHardlink makes files equal in content, owner, mode, xattrs and mtime hard links of one
	// inode, across layers and images; their link count and inode number show it.
	DedupHardlink Dedup = "hardlink"
)

// ParseDedup checks a dedup setting ("" is DedupAuto).
func ParseDedup(s string) (Dedup, error) {
	switch d := Dedup(s); d {
	case "", DedupAuto:
		return DedupAuto, nil
	case DedupOff, DedupHardlink:
		return d, nil
	}
	return "", fmt.Errorf("dedup %q: want %s, %s or %s", s, DedupAuto, DedupOff, DedupHardlink)
}

// Sharing is how the files of a layer staged in this store share data: what the store's Dedup
// setting came to on its filesystem.
type Sharing int

const (
	ShareNone     Sharing = iota
	ShareReflink          // equal bytes share extents; every file keeps its own inode
	ShareHardlink         // files equal in bytes and metadata are hard links of one inode
)

func (s Sharing) String() string {
	return [...]string{ShareNone: "off", ShareReflink: "reflink", ShareHardlink: "hardlink"}[s]
}

// Sharing says how this store shares file data (DedupAuto is probed on first use: a clone between
// two temp files in the staging area).
func (s *Store) Sharing() (Sharing, error) {
	s.sharingOnce.Do(func() {
		var fixed bool
		if s.sharing, fixed = s.fixedSharing(); !fixed {
			s.sharing, s.sharingErr = s.probeReflink()
		}
		s.sharingKnown.Store(true)
	})
	return s.sharing, s.sharingErr
}

// SharingIfKnown is Sharing without a probe: ok is false when the store's Dedup is auto and nothing
// needed to find out yet (no layer was staged), so a run that stages nothing writes nothing.
func (s *Store) SharingIfKnown() (sharing Sharing, ok bool) {
	if sharing, fixed := s.fixedSharing(); fixed {
		return sharing, true
	}
	if !s.sharingKnown.Load() {
		return ShareNone, false
	}
	return s.sharing, s.sharingErr == nil
}

// fixedSharing is the sharing that the store's Dedup option decides alone (off, hardlink); fixed is
// false for auto, which the filesystem decides.
func (s *Store) fixedSharing() (sharing Sharing, fixed bool) {
	switch s.opts.Dedup {
	case DedupOff:
		return ShareNone, true
	case DedupHardlink:
		return ShareHardlink, true
	}
	return ShareNone, false
}

// probeReflink clones one file into another inside the store's staging area: ShareReflink if the
// filesystem does it.
func (s *Store) probeReflink() (Sharing, error) {
	dir := path.Join(stagingDir, "probe-"+randomName())
	if err := s.mkdir(dir); err != nil {
		return ShareNone, fmt.Errorf("probing for reflinks: %w", err)
	}
	defer func() { _ = s.root.RemoveAll(dir) }() // else the next Open removes it
	src, err := s.root.OpenFile(path.Join(dir, "src"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return ShareNone, fmt.Errorf("probing for reflinks: %w", err)
	}
	defer closeQuietly(src)
	if _, err := src.Write(bytes.Repeat([]byte("cargohold"), 1024)); err != nil {
		return ShareNone, fmt.Errorf("probing for reflinks: %w", err)
	}
	dst, err := s.root.OpenFile(path.Join(dir, "dst"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return ShareNone, fmt.Errorf("probing for reflinks: %w", err)
	}
	defer closeQuietly(dst)
	if unix.IoctlFileClone(int(dst.Fd()), int(src.Fd())) != nil {
		return ShareNone, nil // EOPNOTSUPP, EXDEV, ENOTTY, EINVAL: no reflinks here
	}
	return ShareReflink, nil
}

func closeQuietly(f *os.File) { _ = f.Close() } // read, or closed on an error path: nothing to report

// KeyPrefix is how much of a file FileKey.CRC covers: after reading that much of a file, the unpacker
// knows which files of the store may equal it, and can compare the rest while it reads instead of
// writing it.
const KeyPrefix = 1 << 20

// FileKey is what the index finds candidates by.
type FileKey struct {
	Size int64
	// CRC is the crc64 (tar-split's table, storage.CRCTable) of the first min(Size, KeyPrefix) bytes.
	CRC uint64
	// Meta is FileMeta.Key of the file: hard links join only files with the same (ignored for
	// reflinks, which share bytes only).
	Meta uint64
}

// FileMeta is what hard links share besides the bytes: owner, mode and mtime (to the nanosecond),
// and every xattr.
type FileMeta struct {
	UID, GID uint32
	Mode     uint32 // permission bits with setuid, setgid and sticky
	Mtime    unix.Timespec
	Xattrs   map[string][]byte
}

// selinuxXattr is left out of FileMeta.Key: SELinux labels belong to the host's policy, not to the
// image (the unpacker never copies them); Equal still compares it.
const selinuxXattr = "security.selinux"

// Key is a digest of the metadata, for the index.
func (m FileMeta) Key() uint64 {
	h := sha256.New()
	_, _ = fmt.Fprintf(h, "%d %d %o %d %d\n", m.UID, m.GID, m.Mode&0o7777, m.Mtime.Sec, m.Mtime.Nsec) // a hash never fails
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for n := range m.Xattrs {
			if n != selinuxXattr && !yield(n) {
				return
			}
		}
	}) {
		_, _ = fmt.Fprintf(h, "%s\x00%s\x00", strconv.Quote(name), m.Xattrs[name])
	}
	return binary.BigEndian.Uint64(h.Sum(nil))
}

// Equal says whether two files may be hard links of one inode as far as metadata goes.
func (m FileMeta) Equal(o FileMeta) bool {
	if m.UID != o.UID || m.GID != o.GID || m.Mode&0o7777 != o.Mode&0o7777 || m.Mtime != o.Mtime || len(m.Xattrs) != len(o.Xattrs) {
		return false
	}
	for n, v := range m.Xattrs {
		if w, ok := o.Xattrs[n]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// ReadFileMeta reads the metadata of an open regular file.
func ReadFileMeta(f *os.File) (FileMeta, error) {
	m, _, err := ReadFileMetaStat(f)
	return m, err
}

// ReadFileMetaStat is ReadFileMeta that also returns what fstat said of the file.
func ReadFileMetaStat(f *os.File) (FileMeta, unix.Stat_t, error) {
	fd := int(f.Fd())
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return FileMeta{}, st, os.NewSyscallError("fstat", err)
	}
	m := FileMeta{UID: st.Uid, GID: st.Gid, Mode: st.Mode & 0o7777, Mtime: st.Mtim}
	names, err := listXattrs(fd)
	if err != nil {
		return FileMeta{}, st, fmt.Errorf("listing xattrs of %s: %w", f.Name(), err)
	}
	for _, n := range names {
		v, err := getXattr(fd, n)
		if errors.Is(err, unix.ENODATA) {
			continue // removed meanwhile
		}
		if err != nil {
			return FileMeta{}, st, fmt.Errorf("reading xattr %s of %s: %w", n, f.Name(), err)
		}
		if m.Xattrs == nil {
			m.Xattrs = map[string][]byte{}
		}
		m.Xattrs[n] = v
	}
	return m, st, nil
}

// listXattrs lists the xattr names of fd (none on a filesystem without xattrs).
func listXattrs(fd int) ([]string, error) {
	for size := 256; ; size *= 4 {
		buf := make([]byte, size)
		n, err := unix.Flistxattr(fd, buf)
		switch {
		case errors.Is(err, unix.ERANGE):
			continue
		case errors.Is(err, unix.ENOTSUP):
			return nil, nil
		case err != nil:
			return nil, os.NewSyscallError("flistxattr", err)
		}
		var names []string
		for _, name := range bytes.Split(buf[:n], []byte{0}) {
			if len(name) > 0 {
				names = append(names, string(name))
			}
		}
		return names, nil
	}
}

func getXattr(fd int, name string) ([]byte, error) {
	for size := 256; ; size *= 4 {
		buf := make([]byte, size)
		n, err := unix.Fgetxattr(fd, name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, os.NewSyscallError("fgetxattr", err)
		}
		return buf[:n], nil
	}
}

// EqualContent compares the first size bytes of two files (which must both be that long), from
// offset 0, in chunks from buf (two halves: one per file).
func EqualContent(a, b *os.File, size int64, buf []byte) (bool, error) {
	half := len(buf) / 2
	x, y := buf[:half], buf[half:2*half]
	for off := int64(0); off < size; {
		n := int(min(int64(half), size-off))
		if _, err := a.ReadAt(x[:n], off); err != nil {
			return false, readErr(a, err)
		}
		if _, err := b.ReadAt(y[:n], off); err != nil {
			return false, readErr(b, err)
		}
		if !bytes.Equal(x[:n], y[:n]) {
			return false, nil
		}
		off += int64(n)
	}
	return true, nil
}

func readErr(f *os.File, err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%s is shorter than it was: %w", f.Name(), io.ErrUnexpectedEOF)
	}
	return err
}
