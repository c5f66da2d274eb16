package unpack

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/cargohold/cargohold/internal/faultpoint"
	"github.com/cargohold/cargohold/layout"
	"golang.org/x/sys/unix"
)

// Hard links between equal files of different layers (layout.ShareHardlink). Layer links a file to
// an equal file of the store while it unpacks it (linknow.go); LinkEqualFiles finishes that when the
// layer is committed, once the layers below are final (as HideLower does):
//   - a file linked to an inode that a layer below uses after all (one that was being unpacked at the
//     same time) gets a copy of its own again;
//   - an inode that a hard-link entry of the layer gave its header's metadata (Layer gave it an inode
//     of its own first) is compared with its candidates again, and made with all its names (a tar
//     hard-link group moves as a group) a hard link of the first of them it may join. Every name is
//     linked beside its old one first, then renamed over it: all of the group or none. An inode that
//     has no room for more links (EMLINK) is skipped, and when no candidate is left the layer's own
//     inode stays: a new copy, itself a candidate from then on.
//
// No container may see two names of one inode that the image did not make hard links itself: the
// readers whose overlay keeps hard links together on copy-up (fuse-overlayfs, and the kernel's with
// index=on) would let a write through one name show through the other. So a file is never linked to
// an inode that a layer below it (whose files the same containers see) or another file of its own
// layer already uses.

// LinkEqualFiles links the files of the layer at root that Layer wrote (res) to equal files of the
// store, when files shares data by hard links, and records every one in files; res.SharedFiles and
// res.SharedBytes count what it linked. Call it when the layers below are committed, before the layer is.
func LinkEqualFiles(root string, res *Result, files *layout.LayerFiles) error {
	if files == nil || files.Sharing() != layout.ShareHardlink || len(res.written) == 0 {
		return nil
	}
	t, err := openTree(root)
	if err != nil {
		return err
	}
	defer t.close()
	k := &linker{rootFd: t.rootFd, files: files, used: map[uint64]bool{}, dirTimes: map[string][2]unix.Timespec{}}
	touched := map[uint64]bool{}
	for _, w := range res.written {
		touched[w.ino] = touched[w.ino] || w.link
		k.used[w.ino] = k.used[w.ino] || w.foreign
	}
	for _, w := range res.written {
		if w.foreign && !w.offBelow {
			if err := k.keepOffBelow(w); err != nil {
				return fmt.Errorf("sharing %q: %w", w.name, err)
			}
		}
	}
	var regroup []*written
	for _, w := range res.written {
		if touched[w.ino] {
			regroup = append(regroup, w)
		}
	}
	for _, g := range k.groups(regroup) {
		if err := k.link(g); err != nil {
			return fmt.Errorf("sharing %q: %w", g.names[0], err)
		}
	}
	res.SharedFiles += k.shared.files
	res.SharedBytes += k.shared.bytes
	return k.restoreDirTimes()
}

// keepOffBelow gives w, a name Layer linked to another layer's inode, a copy of its own if a layer
// below (committed since) uses that inode too.
func (k *linker) keepOffBelow(w *written) error {
	st, err := statReal(k.rootFd, w.name)
	if err != nil || st.Ino != w.ino {
		return nil // replaced by a later entry of the layer
	}
	below, err := k.files.InLayersBelow(w.key, w.ino)
	if err != nil || !below {
		return err
	}
	dir, base := splitName(w.name)
	dirFd, err := openRealDir(k.rootFd, dir)
	if err != nil {
		return err
	}
	defer closeFd(dirFd)
	if err := k.keepDirTimes(dir, dirFd); err != nil {
		return err
	}
	if _, err := replaceByCopy(dirFd, base); err != nil {
		return err
	}
	k.shared.files--
	k.shared.bytes -= w.key.Size
	return nil
}

// linker is one layer's hard-link pass.
type linker struct {
	rootFd int
	files  *layout.LayerFiles
	used   map[uint64]bool // inodes the layer's names use by now: no other name of the layer may join them
	// dirTimes are the times of the directories whose entries the pass changed, as they were.
	dirTimes map[string][2]unix.Timespec
	shared   shareStats
}

// linkGroup is one inode of the layer with its names.
type linkGroup struct {
	names []string // in the order of the layer's entries
	ino   uint64
	size  int64

	checked *written // the name of the file entry, with its key (nil: none)
}

// verified is a candidate that reverify compared equal, and its inode.
type verified struct {
	c   layout.Candidate
	ino uint64
}

// groups gathers the layer's regular files by inode, in the order of the first name of each. An inode
// with a name the layer no longer has (an entry replaced it) or with names elsewhere is left out (and
// marked used), and so are empty files (nothing to share).
func (k *linker) groups(ws []*written) []*linkGroup {
	var groups []*linkGroup
	byIno := map[uint64]*linkGroup{}
	nlinks := map[uint64]uint64{}
	for _, w := range ws {
		st, err := statReal(k.rootFd, w.name)
		if err != nil || st.Ino != w.ino || st.Mode&unix.S_IFMT != unix.S_IFREG {
			continue
		}
		k.used[st.Ino] = true
		g := byIno[st.Ino]
		if g == nil {
			g = &linkGroup{ino: st.Ino, size: st.Size}
			byIno[st.Ino] = g
			groups = append(groups, g)
		}
		if !slices.Contains(g.names, w.name) {
			g.names = append(g.names, w.name)
		}
		if g.checked == nil && w.checked {
			g.checked = w
		}
		nlinks[st.Ino] = uint64(st.Nlink)
	}
	complete := groups[:0]
	for _, g := range groups {
		if g.size > 0 && uint64(len(g.names)) == nlinks[g.ino] {
			complete = append(complete, g)
		}
	}
	return complete
}

// link links g's names to the first of its verified candidates that no name of this layer or of a layer
// below uses yet and that has room for them, and records g in the index either way.
func (k *linker) link(g *linkGroup) error {
	w := g.checked
	if w == nil {
		return nil // (a file with no data, or one replaced since)
	}
	if err := k.reverify(g, w); err != nil {
		return err
	}
	for _, v := range w.cands {
		linked, err := k.tryLink(g, w.key, v)
		var lerr *linkError
		switch {
		case errors.As(err, &lerr) && errors.Is(lerr.err, unix.EMLINK):
			// No room for the group: the next candidate, or at the end the layer's own inode (a new
			// copy). An inode that cannot take even one more link is no candidate any more.
			if len(g.names) == 1 {
				v.c.Drop()
			}
			continue
		case errors.As(err, &lerr):
			continue // cannot link to this one (another filesystem, say)
		case err != nil:
			return err
		}
		if linked {
			break
		}
	}
	return k.files.Add(g.names[0], w.key)
}

// reverify finds the candidates that w, whose inode a hard-link entry of the layer gave its header's
// metadata, equals now in metadata and every byte.
func (k *linker) reverify(g *linkGroup, w *written) error {
	own, err := openReal(k.rootFd, g.names[0])
	if err != nil {
		return err
	}
	defer closeQuietly(own)
	meta, err := layout.ReadFileMeta(own)
	if err != nil {
		return err
	}
	w.meta, w.key.Meta = meta, meta.Key()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	w.cands = verifyCands(k.files, w, own, *bp)
	return nil
}

// tryLink links g to the verified candidate v, unless a name of this layer or of a layer below uses
// its inode (or it is not the inode reverify compared any more).
func (k *linker) tryLink(g *linkGroup, key layout.FileKey, v verified) (bool, error) {
	if k.used[v.ino] {
		return false, nil
	}
	if below, err := k.files.InLayersBelow(key, v.ino); err != nil || below {
		return false, err
	}
	src, err := v.c.Open()
	if err != nil {
		return false, nil
	}
	defer closeQuietly(src)
	var st unix.Stat_t
	if unix.Fstat(int(src.Fd()), &st) != nil || st.Ino != v.ino {
		return false, nil
	}
	if err := k.relink(g.names, src); err != nil {
		return false, err
	}
	k.used[v.ino] = true
	k.shared.files++
	k.shared.bytes += g.size
	faultpoint.Hit("file-shared")
	return true, nil
}

// linkError is a failed linkat of relink: nothing was changed.
type linkError struct{ err error }

func (e *linkError) Error() string { return "linkat: " + e.err.Error() }
func (e *linkError) Unwrap() error { return e.err }

// relink makes every name in names a name of src's inode, or (a *linkError) none: a new link for each
// beside it first, then each renamed over its name.
func (k *linker) relink(names []string, src *os.File) error {
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
		dirFd, err := openRealDir(k.rootFd, dir)
		if err == nil {
			err = k.keepDirTimes(dir, dirFd)
		}
		if err != nil {
			if dirFd >= 0 {
				closeFd(dirFd)
			}
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

// keepDirTimes remembers the times of directory dir (fd) before the pass first changes its entries.
func (k *linker) keepDirTimes(dir string, fd int) error {
	if _, ok := k.dirTimes[dir]; ok {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return os.NewSyscallError("fstat", err)
	}
	k.dirTimes[dir] = [2]unix.Timespec{st.Atim, st.Mtim}
	return nil
}

// restoreDirTimes gives the directories whose entries the pass changed their times back.
func (k *linker) restoreDirTimes() error {
	for dir, ts := range k.dirTimes {
		fd, err := openRealDir(k.rootFd, dir)
		if err != nil {
			return err
		}
		err = unix.UtimesNanoAt(unix.AT_FDCWD, fdPath(fd), ts[:], 0)
		closeFd(fd)
		if err != nil {
			return fmt.Errorf("directory %q: %w", dir, os.NewSyscallError("utimensat", err))
		}
	}
	return nil
}

// realHow resolves the names Layer recorded: below the root, through no symlink (a later entry may
// have put one where a directory was).
var realHow = unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
	Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}

func openRealDir(rootFd int, dir string) (int, error) {
	if dir == "." {
		dir = ""
	}
	how := realHow
	fd, err := unix.Openat2(rootFd, "./"+dir, &how)
	return fd, os.NewSyscallError("openat2", err)
}

func statReal(rootFd int, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	dir, base := splitName(name)
	dirFd, err := openRealDir(rootFd, dir)
	if err != nil {
		return st, err
	}
	defer closeFd(dirFd)
	return st, unix.Fstatat(dirFd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
}

func openReal(rootFd int, name string) (*os.File, error) {
	dir, base := splitName(name)
	dirFd, err := openRealDir(rootFd, dir)
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
