// Package unpack writes one layer (an uncompressed tar stream) into a layer directory of a
// containers-storage store (an overlay diff/, or with Options.Apply a vfs layer's whole tree), in one
// streaming pass that also records the layer's tar-split metadata, diff ID,
// size and owners. It is the one place that decides tar semantics: entry types, whiteouts, opaque
// directories, hardlinks, ownership, xattrs, holes and path safety.
package unpack

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/cargohold/cargohold/internal/ctxio"
	"github.com/cargohold/cargohold/layout"
	"github.com/opencontainers/go-digest"
	tstar "github.com/vbatts/tar-split/archive/tar"
	"github.com/vbatts/tar-split/tar/storage"
	"go.podman.io/storage/pkg/archive"
	"go.podman.io/storage/pkg/ioutils"
	"golang.org/x/sys/unix"
)

// Options bound what one layer may do.
type Options struct {
	MaxSize int64 // limit on uncompressed tar bytes; 0 means no limit. Exceeding it is an error (decompression bomb).
	// Apply unpacks onto a copy of the parent layer's whole tree (the vfs driver's format): whiteouts
	// delete what they name and an opaque marker empties its directory of what lower layers left,
	// instead of being recorded for an overlay mount.
	Apply bool
	// CopyHardlinksAcrossDirs writes a hard link whose target is in another directory as a copy of
	// the target (content, owner, mode, xattrs, times), for stores on CVMFS, which keeps hard links
	// only within one directory. Links within one directory stay links.
	CopyHardlinksAcrossDirs bool
	// Files, if set, shares the data of the layer's files with equal files the store already holds,
	// and learns about the layer's files (share.go; nil or layout.ShareNone: every file is written).
	Files *layout.LayerFiles
}

// Result is what the caller records about the layer.
type Result struct {
	DiffID   digest.Digest // sha256 of the whole uncompressed stream, every byte read incl. trailing padding
	DiffSize int64         // number of uncompressed bytes
	UIDs     []uint32      // sorted distinct owners of entries (like containers/storage's uidset)
	GIDs     []uint32
	// OpaqueDirs are the directories the layer marked opaque (paths relative to the root, "." for
	// the root itself), for HideLower once the layers below are final. None in Apply mode.
	OpaqueDirs []string
	// SharedFiles and SharedBytes say how much data the layer shares with files the store held
	// (Options.Files) instead of holding it twice.
	SharedFiles int
	SharedBytes int64

	written []*written // regular files, for LinkEqualFiles (hard links)

	digestState []byte // the sha256 state after the last byte, for DiffIDWithZeros
}

// DiffIDWithZeros is the digest the stream would have with n more zero bytes at its end ("" if
// unknown). It tells a layer that lost the zero padding after its tar's end-of-archive marker (see
// builder's check of the diff ID) from one whose content differs.
func (r Result) DiffIDWithZeros(n int) digest.Digest {
	h := sha256.New()
	if u, ok := h.(encoding.BinaryUnmarshaler); !ok || r.digestState == nil || u.UnmarshalBinary(r.digestState) != nil {
		return ""
	}
	_, _ = h.Write(make([]byte, n)) // a hash's Write never fails
	return digest.NewDigest(digest.SHA256, h)
}

// ErrTooLarge is wrapped by the error Layer returns when the layer exceeds Options.MaxSize.
var ErrTooLarge = errors.New("layer exceeds the size limit")

// ignoredXattrs are not copied from layers, as in containers/storage: SELinux labels belong to the
// policy of the host that runs the container, not to the image.
var ignoredXattrs = map[string]bool{"security.selinux": true}

// Layer reads an uncompressed tar stream and writes its entries below root (an existing, empty directory:
// the layer's diff/), streaming, never buffering a file in memory. The tar-split metadata (the JSON stream of
// github.com/vbatts/tar-split/tar/storage.NewJSONPacker, as containers/storage records it) is written to
// tarSplit uncompressed; the caller gzips it. The stream is read to EOF so DiffID covers every byte.
//
// Ownership, device nodes, whiteouts and trusted.* xattrs need root (CAP_CHOWN, CAP_MKNOD,
// CAP_SYS_ADMIN, CAP_SETFCAP); without them Layer fails rather than writing a store that differs
// from the image. On error, root holds a partial layer that the caller must discard. When ctx ends,
// Layer stops at its next read of the stream, with ctx's cause as the error.
func Layer(ctx context.Context, tarStream io.Reader, root string, tarSplit io.Writer, opts Options) (Result, error) {
	if opts.MaxSize < 0 {
		return Result{}, fmt.Errorf("negative layer size limit %d", opts.MaxSize)
	}
	t, err := openTree(root)
	if err != nil {
		return Result{}, err
	}
	defer t.close()
	t.chownImplicitDirs = !opts.Apply
	if opts.Files != nil && opts.Files.Sharing() == layout.ShareNone {
		opts.Files = nil
	}
	if opts.Files != nil && opts.Files.Sharing() == layout.ShareHardlink && opts.CopyHardlinksAcrossDirs {
		return Result{}, errors.New("hard links across layers (dedup hardlink) cannot be combined with copying hard links across directories (for CVMFS)")
	}
	x := &extractor{
		files:               opts.Files,
		tree:                t,
		apply:               opts.Apply,
		maxSize:             opts.MaxSize,
		copyLinksAcrossDirs: opts.CopyHardlinksAcrossDirs,
		seen:                map[string]struct{}{},
		dirTimes:            map[string][2]unix.Timespec{},
		uids:                map[uint32]struct{}{},
		gids:                map[uint32]struct{}{},
	}

	// Data flow, in one pass on this goroutine: tarStream → size limit → sha256 and byte count →
	// tar-split's tar reader → filesystem, with the tar-split metadata recorded from the same reads
	// (tarsplit.go).
	in := ctxio.Reader(ctx, tarStream)
	if opts.MaxSize > 0 {
		in = io.LimitReader(in, opts.MaxSize+1) // one byte more than allowed is enough to know
	}
	digester := digest.Canonical.Digester()
	counter := ioutils.NewWriteCounter(digester.Hash())
	metadata := bufio.NewWriterSize(tarSplit, 32<<10)
	err = x.extract(io.TeeReader(in, counter), storage.NewJSONPacker(metadata))
	if serr := x.settle(); err == nil { // every file finished, even when the layer failed
		err = serr
	}
	if opts.MaxSize > 0 && counter.Count > opts.MaxSize {
		// Whatever the cut-off stream made the tar reader say, the cause is the limit.
		return Result{}, fmt.Errorf("%w: more than %d uncompressed bytes", ErrTooLarge, opts.MaxSize)
	}
	if err != nil && ctx.Err() != nil {
		return Result{}, context.Cause(ctx) // whatever the cut-off stream made the tar reader say
	}
	if err != nil {
		return Result{}, err
	}
	if err := metadata.Flush(); err != nil {
		return Result{}, fmt.Errorf("writing tar-split metadata: %w", err)
	}
	if err := x.indexFiles(); err != nil {
		return Result{}, err
	}
	if err := x.applyDirTimes(); err != nil {
		return Result{}, err
	}
	if err := x.touchRoot(); err != nil {
		return Result{}, err
	}
	var state []byte
	if m, ok := digester.Hash().(encoding.BinaryMarshaler); ok {
		state, _ = m.MarshalBinary() // without it, DiffIDWithZeros knows nothing
	}
	return Result{
		DiffID:      digester.Digest(),
		DiffSize:    counter.Count,
		digestState: state,
		UIDs:        slices.Sorted(maps.Keys(x.uids)),
		GIDs:        slices.Sorted(maps.Keys(x.gids)),

		OpaqueDirs: slices.Compact(slices.Sorted(slices.Values(x.opaqueDirs))),

		SharedFiles: x.shared.files,
		SharedBytes: x.shared.bytes,
		written:     x.written,
	}, nil
}

// extractor holds the state of one layer's extraction.
type extractor struct {
	*tree
	apply               bool // see Options.Apply
	maxSize             int64
	copyLinksAcrossDirs bool                 // see Options.CopyHardlinksAcrossDirs
	copies              map[copyKey]madeCopy // copies made for hard links across directories
	// seen holds path.Clean of every entry name so far: tar-split's packer refuses duplicates by
	// that key, and hardlinks may only point to earlier entries.
	seen map[string]struct{}
	// dirTimes are applied last, because creating entries inside a directory changes its mtime.
	dirTimes   map[string][2]unix.Timespec
	uids, gids map[uint32]struct{}
	opaqueDirs []string // see Result.OpaqueDirs

	files   *layout.LayerFiles // see Options.Files; nil: no sharing
	written []*written         // regular files with data, for the index and the hard-link pass (links.go)
	pending pendingFiles       // small files being shared on other goroutines (share.go)
	shared  shareStats         // (under pending.mu)
	// linkedTo are the inodes of other layers that names of this layer were made hard links of
	// (linknow.go; under pending.mu); removed says that an entry removed or replaced something.
	linkedTo map[uint64]*written
	removed  bool
	// pendingNames are the names of the small files under way (linknow.go; under pending.mu).
	pendingNames map[string]bool
}

// extract applies every entry of the tar stream r and records the stream with p (see tarsplit.go),
// reading r to its end so that the digest and tar-split cover every byte.
func (x *extractor) extract(r io.Reader, p storage.Packer) error {
	tr := tstar.NewReader(r)
	tr.RawAccounting = true
	prev := ""
	for {
		th, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if prev == "" {
				return fmt.Errorf("reading the first layer entry: %w", err)
			}
			return fmt.Errorf("reading the layer entry after %q: %w", prev, err)
		}
		if err := addSegment(p, tr.RawBytes()); err != nil {
			return recordError(err)
		}
		hdr := stdHeader(th)
		name, ok := cleanName(hdr.Name)
		if !ok {
			return fmt.Errorf("layer entry %q escapes the layer directory", hdr.Name)
		}
		body := &entryBody{r: tr}
		if err := x.entry(hdr, name, body); err != nil {
			return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
		if err := body.drain(); err != nil {
			return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
		if err := addFile(p, th, body); err != nil {
			return recordError(err)
		}
		if err := addSegment(p, tr.RawBytes()); err != nil { // as asm does; normally empty
			return recordError(err)
		}
		prev = hdr.Name
	}
	// The end-of-archive marker, and whatever follows it: reassembly needs those bytes too.
	if err := addSegment(p, tr.RawBytes()); err != nil {
		return recordError(err)
	}
	if err := addTrailer(r, p); err != nil {
		return fmt.Errorf("reading the end of the layer: %w", err)
	}
	return nil
}

// cleanName turns an entry name into a path relative to the layer root ("." for the root). ok is
// false if ".." climbs above the root.
func cleanName(name string) (clean string, ok bool) {
	clean = path.Clean(strings.TrimLeft(name, "/"))
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", false
	}
	return clean, true
}

// splitName splits a clean relative path into its parent directory ("." at the top) and base name.
func splitName(name string) (dir, base string) {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return ".", name
	}
	return name[:i], name[i+1:]
}

// entry applies one tar entry; name is its cleaned path relative to the root, r its body.
func (x *extractor) entry(hdr *tar.Header, name string, r *entryBody) error {
	// Owners are logged as containers/storage does: every header except whiteouts, even pax
	// global headers, so that layers.json matches what Podman would record.
	if !strings.HasPrefix(path.Base(hdr.Name), archive.WhiteoutPrefix) {
		x.uids[uint32(hdr.Uid)] = struct{}{}
		x.gids[uint32(hdr.Gid)] = struct{}{}
	}
	// tar-split would fail on this entry anyway ("duplicates of file paths not supported") and
	// Podman could never reassemble the layer; say which entry it is.
	key := path.Clean(hdr.Name)
	if _, dup := x.seen[key]; dup {
		return errors.New("duplicate entry: the layer names this path twice, which containers/storage cannot record (tar-split)")
	}
	defer func() { x.seen[key] = struct{}{} }() // after the entry: a hardlink cannot point to itself

	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	// chown treats -1 (as uint32: 4294967295) as "leave unchanged"; never let a header do that.
	if hdr.Uid < 0 || hdr.Uid >= math.MaxUint32 || hdr.Gid < 0 || hdr.Gid >= math.MaxUint32 {
		return fmt.Errorf("owner %d:%d out of range", hdr.Uid, hdr.Gid)
	}
	if x.maxSize > 0 && hdr.Typeflag == tar.TypeReg && hdr.Size > x.maxSize {
		// Refuse before writing anything of it.
		return fmt.Errorf("%w: the entry alone has %d bytes, the limit is %d", ErrTooLarge, hdr.Size, x.maxSize)
	}

	if name == "." {
		return x.rootDir(hdr)
	}
	dir, base := splitName(name)
	if strings.HasPrefix(base, archive.WhiteoutPrefix) {
		return x.whiteout(hdr, dir, base)
	}
	parent, err := x.entryParent(name, dir)
	if err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeReg: // the tar reader turns the old TypeRegA into TypeReg (or TypeDir)
		return x.regular(parent, name, base, hdr, r)
	case tar.TypeDir:
		return x.directory(parent, name, base, hdr)
	case tar.TypeSymlink:
		if err := x.create(parent, name, base, "symlinkat", func() error {
			return unix.Symlinkat(hdr.Linkname, parent, base)
		}); err != nil {
			return err
		}
		return setMetaAt(parent, base, hdr, true)
	case tar.TypeLink:
		return x.hardlink(parent, name, base, hdr)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return x.node(parent, name, base, hdr)
	default:
		return fmt.Errorf("unsupported entry type %q", hdr.Typeflag)
	}
}

// entryParent returns a handle of the parent directory dir of the entry name (see tree.parent), once
// no small file under way could meet the entry (linknow.go).
func (x *extractor) entryParent(name, dir string) (int, error) {
	if err := x.settleFor(name); err != nil {
		return -1, err
	}
	parent, err := x.parent(dir)
	if err != nil {
		return -1, fmt.Errorf("parent directory %q: %w", dir, err)
	}
	return parent, x.settleIfAliased(parent, dir)
}

// create makes a new node with mk. If something is already there (an earlier entry of this layer,
// or a parent directory created for an earlier entry) the later entry wins: the old one is removed.
func (x *extractor) create(parent int, name, base, op string, mk func() error) error {
	err := mk()
	if errors.Is(err, unix.EEXIST) {
		if err := x.remove(parent, name, base); err != nil {
			return err
		}
		err = mk()
	}
	return os.NewSyscallError(op, err)
}

// remove deletes name (recursively) and everything the extractor remembers about what was there.
func (x *extractor) remove(parent int, name, base string) error {
	if err := x.settle(); err != nil { // a file under way may be what goes
		return err
	}
	x.invalidate()
	x.removed = true
	clear(x.copies) // an earlier copy may be what goes; its inode number may come back
	delete(x.dirTimes, name)
	for dir := range x.dirTimes {
		if strings.HasPrefix(dir, name+"/") {
			delete(x.dirTimes, dir)
		}
	}
	if err := removeAll(parent, base); err != nil {
		return fmt.Errorf("replacing the existing %q: %w", name, err)
	}
	return nil
}

func (x *extractor) regular(parent int, name, base string, hdr *tar.Header, body *entryBody) error {
	if x.files != nil && x.files.Sharing() == layout.ShareHardlink && hdr.Size > 0 {
		return x.regularLinked(parent, name, base, hdr, body) // linknow.go
	}
	fd := -1
	err := x.create(parent, name, base, "openat", func() (err error) {
		fd, err = unix.Openat(parent, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		return err
	})
	if err != nil {
		return err
	}
	// Body first: writing (and cloning) clears setuid bits and capabilities, chown clears them too.
	var key layout.FileKey
	reflinks := x.files != nil && x.files.Sharing() == layout.ShareReflink
	switch {
	case reflinks && hdr.Size > 0 && hdr.Size <= layout.KeyPrefix:
		return x.shareSmall(fd, parent, base, hdr, body) // finishes the file, maybe on another goroutine
	case reflinks && hdr.Size > 0:
		key, err = x.cloneOrWrite(fd, body, hdr.Size)
	default:
		err = writeBody(fd, body, hdr.Size)
	}
	if err != nil {
		closeFd(fd)
		return err
	}
	if _, err := finishRegular(fd, parent, base, hdr, false); err != nil || x.files == nil || hdr.Size == 0 {
		return err
	}
	key.Meta = headerMeta(hdr).Key()
	return x.keepRealName(parent, base, key)
}

// finishRegular gives the regular file fd (parent/base), its data written, the header's owner, mode,
// xattrs and times, and closes it. It returns the file's inode if asked to (ino: an fstat more).
func finishRegular(fd, parent int, base string, hdr *tar.Header, ino bool) (uint64, error) {
	err := setOwnerModeFd(fd, hdr)
	if err == nil {
		err = setXattrs(hdr, func(attr string, value []byte) error { return unix.Fsetxattr(fd, attr, value, 0) })
	}
	var st unix.Stat_t
	if err == nil && ino {
		err = os.NewSyscallError("fstat", unix.Fstat(fd, &st))
	}
	if cerr := unix.Close(fd); err == nil {
		err = os.NewSyscallError("close", cerr)
	}
	if err == nil {
		err = setTimesAt(parent, base, hdr)
	}
	return st.Ino, err
}

func (x *extractor) directory(parent int, name, base string, hdr *tar.Header) error {
	err := unix.Mkdirat(parent, base, 0o700)
	if err == unix.EEXIST {
		// An existing directory is kept (its contents merge); anything else is replaced.
		var st unix.Stat_t
		if err = unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return os.NewSyscallError("fstatat", err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err := x.remove(parent, name, base); err != nil {
				return err
			}
			err = unix.Mkdirat(parent, base, 0o700)
		}
	}
	if err != nil {
		return os.NewSyscallError("mkdirat", err)
	}
	fd, err := unix.Openat(parent, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("openat", err)
	}
	return x.dirMeta(fd, name, hdr)
}

// rootDir handles an entry that names the layer root ("./"). The storage library's overlay driver
// (archive.Unpack of Podman 4.3 to 5.8, storage 1.45 to 1.64) skips it, whatever its type, so the
// root keeps the mode and owner the driver created it with. The vfs driver (archive.UnpackLayer)
// applies a directory's owner, mode and xattrs to the root; its times do not stick there (see
// touchRoot).
func (x *extractor) rootDir(hdr *tar.Header) error {
	if !x.apply {
		return nil
	}
	if hdr.Typeflag != tar.TypeDir {
		return errors.New("only a directory can stand for the layer root")
	}
	fd, err := unix.Openat(x.rootFd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("openat", err)
	}
	defer closeFd(fd)
	if err := setOwnerModeFd(fd, hdr); err != nil {
		return err
	}
	return setXattrs(hdr, func(attr string, value []byte) error { return unix.Fsetxattr(fd, attr, value, 0) })
}

// touchRoot sets the root's mtime to now: with either driver, the storage library's unpacking
// changes the root last (a temporary directory made and removed in it, or the entries created in
// it), so Podman's layer root bears the time of unpacking, never a time from the layer.
func (x *extractor) touchRoot() error {
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_NOW}}
	// Through the root's handle: its /proc link leads to the very directory opened at the start.
	return os.NewSyscallError("utimensat", unix.UtimesNanoAt(unix.AT_FDCWD, fdPath(x.rootFd), ts, 0))
}

// dirMeta sets owner, mode and xattrs of directory fd now and closes it; its times come last.
func (x *extractor) dirMeta(fd int, name string, hdr *tar.Header) error {
	err := setOwnerModeFd(fd, hdr)
	if err == nil {
		err = setXattrs(hdr, func(attr string, value []byte) error { return unix.Fsetxattr(fd, attr, value, 0) })
	}
	closeFd(fd)
	// As archive.Unpack sets them at the end: the header's own access time, not one raised to the
	// modification time as for other entries.
	x.dirTimes[name] = [2]unix.Timespec{chtimesSpec(hdr.AccessTime), chtimesSpec(hdr.ModTime)}
	return err
}

func (x *extractor) hardlink(parent int, name, base string, hdr *tar.Header) error {
	if err := x.settle(); err != nil { // its target may be under way
		return err
	}
	target, ok := cleanName(hdr.Linkname)
	if !ok {
		return fmt.Errorf("hardlink points to %q, which escapes the layer directory", hdr.Linkname)
	}
	// Only entries of this layer: a link into a lower layer, or to a file that is still to come,
	// would silently link to whatever the diff directory holds at that path.
	_, ok = x.seen[target]
	if !ok {
		_, ok = x.seen["/"+target] // how "/a" is keyed
	}
	if !ok {
		return fmt.Errorf("hardlink points to %q, which is not earlier in the same layer", hdr.Linkname)
	}
	targetDir, targetBase := splitName(target)
	targetParent, err := x.openDir(targetDir)
	if err != nil {
		return fmt.Errorf("hardlink target %q: %w", hdr.Linkname, err)
	}
	defer closeFd(targetParent)
	if err := x.adoptTarget(targetParent, targetBase); err != nil {
		return fmt.Errorf("hardlink target %q: %w", hdr.Linkname, err)
	}
	op, mk := "linkat", func() error {
		return unix.Linkat(targetParent, targetBase, parent, base, 0) // 0: never follow a symlink target
	}
	// With copyLinksAcrossDirs, a link into another directory becomes a link to the copy made in
	// this directory before, or else a new copy.
	copied, crossDir := false, false
	if x.copyLinksAcrossDirs {
		earlierCopy, found, err := x.crossDirLink(targetParent, target, parent)
		if err != nil {
			return err
		}
		crossDir = earlierCopy != "" || !found
		switch {
		case !found:
			copied = true
			op, mk = "copy", func() error { return copyNode(targetParent, targetBase, parent, base) }
		case earlierCopy != "":
			mk = func() error { return unix.Linkat(parent, earlierCopy, parent, base, 0) }
		}
	}
	if err := x.create(parent, name, base, op, mk); err != nil {
		return err
	}
	if copied {
		if err := x.rememberCopy(target, parent, base); err != nil {
			return err
		}
	}
	// The header's metadata applies to the shared inode, as containers/storage does (for a link to
	// a symlink: owner and xattrs only); with a copy, to both names, so that each reads as the
	// shared inode would.
	var st unix.Stat_t
	if err := unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return os.NewSyscallError("fstatat", err)
	}
	symlink := st.Mode&unix.S_IFMT == unix.S_IFLNK
	if copied || crossDir {
		if err := setMetaAt(targetParent, targetBase, hdr, symlink); err != nil {
			return fmt.Errorf("hardlink target %q: %w", hdr.Linkname, err)
		}
	}
	if err := setMetaAt(parent, base, hdr, symlink); err != nil {
		return err
	}
	return x.keepLink(parent, base, &st)
}

// node creates a device node or FIFO.
func (x *extractor) node(parent int, name, base string, hdr *tar.Header) error {
	var typ uint32
	dev := 0
	switch hdr.Typeflag {
	case tar.TypeFifo:
		typ = unix.S_IFIFO
	case tar.TypeChar, tar.TypeBlock:
		typ = unix.S_IFCHR
		if hdr.Typeflag == tar.TypeBlock {
			typ = unix.S_IFBLK
		}
		// mknod takes a 32-bit dev_t (12-bit major, 20-bit minor): larger numbers would wrap.
		if hdr.Devmajor < 0 || hdr.Devmajor >= 1<<12 || hdr.Devminor < 0 || hdr.Devminor >= 1<<20 {
			return fmt.Errorf("device number %d:%d out of range", hdr.Devmajor, hdr.Devminor)
		}
		dev = int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
	}
	// Permissions 0 here, exact ones in setMetaAt: mknod's mode is subject to the umask.
	if err := x.create(parent, name, base, "mknodat", func() error {
		return unix.Mknodat(parent, base, typ, dev)
	}); err != nil {
		return err
	}
	return setMetaAt(parent, base, hdr, false)
}

// whiteout handles the OCI whiteout entries: ".wh..wh..opq" makes its directory opaque, ".wh.NAME"
// becomes the overlay whiteout for NAME, a 0/0 character device. Neither file is created itself.
func (x *extractor) whiteout(hdr *tar.Header, dir, base string) error {
	if err := x.settle(); err != nil { // what it hides may be under way
		return err
	}
	if base == archive.WhiteoutOpaqueDir {
		return x.opaque(dir)
	}
	target := strings.TrimPrefix(base, archive.WhiteoutPrefix)
	if target == "" || target == "." || target == ".." {
		return fmt.Errorf("invalid whiteout of %q", target)
	}
	parent, err := x.parent(dir)
	if errors.Is(err, unix.ENOTDIR) {
		// An earlier whiteout or file replaced a parent ("rm -rf /a" yields ".wh.a" and
		// "a/.wh.b"): nothing below it is left to hide. containers/storage ignores these too.
		return nil
	}
	if err != nil {
		return fmt.Errorf("parent directory %q: %w", dir, err)
	}
	name := path.Join(dir, target)
	if x.apply {
		if err := unix.Fstatat(parent, target, &unix.Stat_t{}, unix.AT_SYMLINK_NOFOLLOW); err == unix.ENOENT {
			return nil // nothing below to delete
		}
		return x.remove(parent, name, target)
	}
	if err := x.create(parent, name, target, "mknodat", func() error {
		return unix.Mknodat(parent, target, unix.S_IFCHR, 0)
	}); err != nil {
		if errors.Is(err, unix.EPERM) {
			// Not root, or a filesystem that refuses overlay whiteouts (an overlayfs such as a CVMFS
			// transaction): a vfs store holds no whiteouts.
			return fmt.Errorf("%w (this filesystem or user cannot create overlay whiteouts: run as root, or publish a vfs store with --driver vfs)", err)
		}
		return err
	}
	return os.NewSyscallError("fchownat", unix.Fchownat(parent, target, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW))
}

// opaque marks dir (created if missing) as opaque with trusted.overlay.opaque and records it for
// HideLower; in apply mode it removes instead what dir holds from lower layers.
func (x *extractor) opaque(dir string) error {
	dirFd, err := x.parent(dir)
	if errors.Is(err, unix.ENOTDIR) {
		return nil // dir is a whiteout or file by now: nothing below it to hide, as for whiteouts
	}
	if err != nil {
		return fmt.Errorf("opaque directory %q: %w", dir, err)
	}
	if x.apply {
		return x.emptyOfLower(dirFd, dir)
	}
	// Where dir really is: it may have been reached through a symlink of this layer.
	real, err := x.inRootPath(dirFd)
	if err != nil {
		return fmt.Errorf("opaque directory %q: %w", dir, err)
	}
	// O_PATH handles cannot carry xattrs; reopen the directory for real.
	fd, err := unix.Openat(dirFd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("openat", err)
	}
	defer closeFd(fd)
	if err := unix.Fsetxattr(fd, opaqueXattr, []byte("y"), 0); err != nil {
		return fmt.Errorf("marking directory %q opaque: setting xattr %s: %w", dir, opaqueXattr, err)
	}
	if real == "" {
		real = "."
	}
	x.opaqueDirs = append(x.opaqueDirs, real)
	return nil
}

// emptyOfLower removes the entries of dir that this layer did not write itself (nor any entry below),
// as applying an opaque marker onto a copy of the lower layers does.
func (x *extractor) emptyOfLower(dirFd int, dir string) error {
	f, err := os.Open(fmt.Sprintf("/proc/self/fd/%d", dirFd))
	if err != nil {
		return err
	}
	children, err := f.Readdirnames(-1)
	closeQuietly(f)
	if err != nil {
		return fmt.Errorf("listing opaque directory %q: %w", dir, err)
	}
	for _, child := range children {
		name := path.Join(dir, child)
		if x.wroteBelow(name) {
			continue
		}
		if err := x.remove(dirFd, name, child); err != nil {
			return err
		}
	}
	return nil
}

// wroteBelow says whether this layer wrote name or anything inside it.
func (x *extractor) wroteBelow(name string) bool {
	for key := range x.seen {
		if k, _ := cleanName(key); k == name || strings.HasPrefix(k, name+"/") {
			return true
		}
	}
	return false
}

// applyDirTimes sets the directories' times, deepest first, once nothing is added to them anymore.
func (x *extractor) applyDirTimes() error {
	names := make([]string, 0, len(x.dirTimes))
	for name := range x.dirTimes {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int {
		if da, db := strings.Count(a, "/"), strings.Count(b, "/"); da != db {
			return db - da
		}
		return strings.Compare(a, b)
	})
	for _, name := range names {
		ts := x.dirTimes[name]
		dir, base := splitName(name)
		parent, err := x.lookupDir(dir)
		if err == nil {
			var st unix.Stat_t
			if err = unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
				continue // replaced by a later entry in a way remove did not see; not ours to touch
			}
			if err == nil {
				err = unix.UtimesNanoAt(parent, base, ts[:], unix.AT_SYMLINK_NOFOLLOW)
			}
		}
		if err != nil {
			return fmt.Errorf("layer entry %q: setting directory times: %w", name, err)
		}
	}
	return nil
}

// setOwnerModeFd sets owner and mode of a node this layer has just created (or a directory it
// merges into), so no file capability can be there yet for chown to drop.
func setOwnerModeFd(fd int, hdr *tar.Header) error {
	if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
		return os.NewSyscallError("fchown", err)
	}
	// After chown, which clears setuid and setgid.
	return os.NewSyscallError("fchmod", unix.Fchmod(fd, mode(hdr)))
}

// setMetaAt applies owner, mode, xattrs and times to a node that has no usable descriptor
// (symlinks, devices, FIFOs, hardlinks), never following a symlink at base. symlink says that
// the node at base is one: it has no mode of its own, and a hard link to it leaves its times
// alone, as in the storage library.
func setMetaAt(parent int, base string, hdr *tar.Header, symlink bool) error {
	if err := chownAtIfDiffers(parent, base, hdr.Uid, hdr.Gid); err != nil {
		return err
	}
	if !symlink {
		if err := chmodAt(parent, base, mode(hdr)); err != nil {
			return err
		}
	}
	// No fsetxattr for these (an O_PATH handle cannot carry xattrs, and opening a device or FIFO
	// has side effects), so lsetxattr through the parent's /proc handle: the directory is the
	// one already resolved inside the root, and lsetxattr does not follow base.
	p := fdPath(parent) + "/" + base
	if err := setXattrs(hdr, func(attr string, value []byte) error { return unix.Lsetxattr(p, attr, value, 0) }); err != nil {
		return err
	}
	switch {
	case hdr.Typeflag == tar.TypeSymlink:
		ts := symlinkTimes(hdr)
		return os.NewSyscallError("utimensat", unix.UtimesNanoAt(parent, base, ts[:], unix.AT_SYMLINK_NOFOLLOW))
	case symlink: // a hard link to a symlink
		return nil
	}
	return setTimesAt(parent, base, hdr)
}

// chownAtIfDiffers changes the owner of base only if it differs, as the storage library's
// idtools.SafeLchown does: a hard link shares an inode that may already carry a file capability,
// and the kernel drops security.capability on every chown, even to the same owner.
func chownAtIfDiffers(parent int, base string, uid, gid int) error {
	var st unix.Stat_t
	if err := unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return os.NewSyscallError("fstatat", err)
	}
	if int(st.Uid) == uid && int(st.Gid) == gid {
		return nil
	}
	return os.NewSyscallError("fchownat", unix.Fchownat(parent, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW))
}

// setXattrs applies the header's SCHILY.xattr.* records; callers run it after chown, which drops
// security.capability. A record with an empty value is not written: Go's tar reader leaves it out
// of Header.Xattrs, which is what Podman 4.3's storage library applies.
func setXattrs(hdr *tar.Header, set func(attr string, value []byte) error) error {
	for key, value := range hdr.PAXRecords {
		attr, ok := strings.CutPrefix(key, archive.PaxSchilyXattr)
		if !ok || value == "" || ignoredXattrs[attr] {
			continue
		}
		if err := set(attr, []byte(value)); err != nil {
			return fmt.Errorf("setting xattr %s: %w", attr, err)
		}
	}
	return nil
}

// setTimesAt sets the times of a node that is not a symlink, as the storage library's
// system.Chtimes does.
func setTimesAt(parent int, base string, hdr *tar.Header) error {
	ts := []unix.Timespec{chtimesSpec(accessTime(hdr)), chtimesSpec(hdr.ModTime)}
	return os.NewSyscallError("utimensat", unix.UtimesNanoAt(parent, base, ts, unix.AT_SYMLINK_NOFOLLOW))
}

// accessTime is the atime the storage library gives an entry: an access time before the
// modification time (or none: ustar headers have no atime) becomes the modification time.
func accessTime(hdr *tar.Header) time.Time {
	if hdr.AccessTime.Before(hdr.ModTime) {
		return hdr.ModTime
	}
	return hdr.AccessTime
}

var (
	epoch   = time.Unix(0, 0)
	maxTime = time.Unix(0, math.MaxInt64) // the last instant UnixNano can express (2262)
)

// chtimesSpec converts t as system.Chtimes does: a time before 1970 or after maxTime becomes
// 1970-01-01T00:00:00Z.
func chtimesSpec(t time.Time) unix.Timespec {
	if t.Before(epoch) || t.After(maxTime) {
		t = epoch
	}
	return unix.NsecToTimespec(t.UnixNano())
}

// symlinkTimes converts a symlink's times as the storage library does for symlinks (its
// timeToTimespec, then lutimes), unlike system.Chtimes: through UnixNano, with no clamp (times
// before 1678 or after 2262 wrap around as UnixNano does), and the zero time leaves a time as it is.
func symlinkTimes(hdr *tar.Header) [2]unix.Timespec {
	conv := func(t time.Time) unix.Timespec {
		if t.IsZero() {
			return unix.Timespec{Nsec: unix.UTIME_OMIT}
		}
		return unix.NsecToTimespec(t.UnixNano())
	}
	return [2]unix.Timespec{conv(accessTime(hdr)), conv(hdr.ModTime)}
}

// mode is the permission part of the header mode, including setuid, setgid and sticky.
func mode(hdr *tar.Header) uint32 {
	return uint32(hdr.Mode) & 0o7777
}
