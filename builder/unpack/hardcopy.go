package unpack

import (
	"errors"
	"fmt"
	"os"

	"go.podman.io/storage/pkg/system"
	"golang.org/x/sys/unix"
)

// Hard links across directories, written as copies (Options.CopyHardlinksAcrossDirs). CVMFS keeps
// hard links only inside one directory; a store meant for it gets a copy instead, which is what
// its clients would see anyway. Only the files on disk change: the tar headers (and so tar-split,
// the diff ID and what podman save produces) are recorded as the layer has them.

// nodeID identifies a file or directory on disk.
type nodeID struct{ dev, ino uint64 }

func fdID(fd int) (nodeID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nodeID{}, os.NewSyscallError("fstat", err)
	}
	return nodeID{st.Dev, st.Ino}, nil
}

// copyKey names the copy of a hard link target made in one directory.
type copyKey struct {
	target string // the target's entry name
	dir    nodeID
}

// madeCopy is a copy made in a directory: later links from that directory to the same target
// become links to it, so a group such as /usr/bin/git plus a hundred names in /usr/lib/git-core/
// costs one copy, not a hundred.
type madeCopy struct {
	base string // its name in the directory
	ino  uint64 // to notice that a later entry replaced it
}

// crossDirLink says how to write a hard link from directory parent to target (in targetParent)
// when links across directories are copied: found with earlierCopy "" means the target is in
// parent itself (link to it); found with earlierCopy set means link to that copy, made in parent
// by an earlier link to the same target; not found means make a new copy.
func (x *extractor) crossDirLink(targetParent int, target string, parent int) (earlierCopy string, found bool, err error) {
	tdir, err := fdID(targetParent)
	if err != nil {
		return "", false, err
	}
	dir, err := fdID(parent)
	if err != nil {
		return "", false, err
	}
	if tdir == dir {
		return "", true, nil
	}
	if c, ok := x.copies[copyKey{target, dir}]; ok {
		var st unix.Stat_t
		if unix.Fstatat(parent, c.base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Ino == c.ino {
			return c.base, true, nil
		}
	}
	return "", false, nil
}

// rememberCopy records the copy just made as base in directory parent.
func (x *extractor) rememberCopy(target string, parent int, base string) error {
	dir, err := fdID(parent)
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return os.NewSyscallError("fstatat", err)
	}
	if x.copies == nil {
		x.copies = map[copyKey]madeCopy{}
	}
	x.copies[copyKey{target, dir}] = madeCopy{base, st.Ino}
	return nil
}

// copyNode makes dstName in dstDir a copy of srcName in srcDir: same type, content (holes stay
// holes), owner, mode, xattrs and times. Neither name is followed if it is a symlink. If dstName
// exists, the bare EEXIST is returned, as linkat would, so the caller can replace it.
func copyNode(srcDir int, srcName string, dstDir int, dstName string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(srcDir, srcName, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return os.NewSyscallError("fstatat", err)
	}
	switch typ := st.Mode & unix.S_IFMT; typ {
	case unix.S_IFREG:
		if err := copyFileAt(srcDir, srcName, dstDir, dstName, st.Size); err != nil {
			return err
		}
	case unix.S_IFLNK:
		target, err := readlinkAt(srcDir, srcName)
		if err != nil {
			return err
		}
		if err := unix.Symlinkat(target, dstDir, dstName); err != nil {
			return err
		}
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO:
		if err := unix.Mknodat(dstDir, dstName, typ, int(st.Rdev)); err != nil { // mode set below
			return err
		}
	default:
		return fmt.Errorf("cannot copy %q: it is a %s", srcName, fileType(typ))
	}
	return copyMeta(srcDir, srcName, dstDir, dstName, &st)
}

// copyFileAt copies a regular file's content into a new file, skipping zero blocks as writeBody does.
func copyFileAt(srcDir int, srcName string, dstDir int, dstName string, size int64) error {
	dst, err := unix.Openat(dstDir, dstName, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err // bare errno: EEXIST means "replace"
	}
	srcFd, err := unix.Openat(srcDir, srcName, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == nil {
		src := os.NewFile(uintptr(srcFd), srcName)
		if err = writeBody(dst, src, size); err != nil {
			err = fmt.Errorf("copying %q: %w", srcName, err)
		}
		closeQuietly(src)
	} else {
		err = os.NewSyscallError("openat", err)
	}
	if cerr := unix.Close(dst); err == nil {
		err = os.NewSyscallError("close", cerr)
	}
	return err
}

// copyMeta gives dst the owner, mode, xattrs and times of src (whose stat is st), in the order
// regular() uses: chown first, because it clears setuid bits and file capabilities.
func copyMeta(srcDir int, srcName string, dstDir int, dstName string, st *unix.Stat_t) error {
	if err := unix.Fchownat(dstDir, dstName, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return os.NewSyscallError("fchownat", err)
	}
	symlink := st.Mode&unix.S_IFMT == unix.S_IFLNK
	if !symlink {
		if err := chmodAt(dstDir, dstName, st.Mode&0o7777); err != nil {
			return err
		}
	}
	// The l*xattr calls go through the directories' /proc handles, as setMetaAt does: they do not
	// follow the final symlink, and the directories are the ones already resolved inside the root.
	if err := copyXattrs(fdPath(srcDir)+"/"+srcName, fdPath(dstDir)+"/"+dstName); err != nil {
		return err
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	return os.NewSyscallError("utimensat", unix.UtimesNanoAt(dstDir, dstName, ts, unix.AT_SYMLINK_NOFOLLOW))
}

func copyXattrs(src, dst string) error {
	names, err := system.Llistxattr(src)
	if errors.Is(err, unix.ENOTSUP) {
		return nil // a filesystem without xattrs: there are none to copy
	}
	if err != nil {
		return err
	}
	for _, attr := range names {
		if ignoredXattrs[attr] {
			continue
		}
		value, err := system.Lgetxattr(src, attr)
		if err != nil {
			return err
		}
		if value == nil {
			continue // removed meanwhile
		}
		if err := unix.Lsetxattr(dst, attr, value, 0); err != nil {
			return fmt.Errorf("setting xattr %s: %w", attr, err)
		}
	}
	return nil
}

func fileType(typ uint32) string {
	switch typ {
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFSOCK:
		return "socket"
	}
	return fmt.Sprintf("file of type %o", typ)
}
