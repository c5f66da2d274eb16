package unpack

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Path resolution below the layer root. Every lookup goes through openat2 with RESOLVE_IN_ROOT, so
// symlinks written by the layer resolve as if the layer root were "/" (like a chroot) and can never
// lead outside it; final components are then created and changed with *at syscalls that do not
// follow symlinks.

const (
	// resolveFlags: ".." and absolute symlinks stop at the layer root; /proc magic links are refused.
	resolveFlags = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS
	// maxSymlinkHops bounds how many dangling symlinks mkdirAll follows, like the kernel's ELOOP limit.
	maxSymlinkHops = 40
	// implicitDirMode is the mode of parent directories the layer does not list itself: what the
	// storage library's MkdirAll calls give them under Podman's usual umask 022 (plus the setgid
	// bit that the kernel passes down from a setgid parent).
	implicitDirMode = 0o755
)

// tree is the layer root with a one-entry cache of the last parent directory: tar entries come
// grouped by directory, so most entries reuse the previous entry's parent without a lookup.
type tree struct {
	rootFd   int    // O_PATH handle of the layer root
	rootReal string // the root's absolute path as the kernel reports it (for inRootPath)

	cacheDir   string // relative path whose handle cacheFd is
	cacheFd    int    // -1 when empty
	cacheValid bool   // false after anything was removed: cacheDir might now resolve elsewhere
	cacheReal  string // where cacheFd really is, relative to the root (realPath), if cacheHasReal
	// cacheHasReal says that cacheReal is known.
	cacheHasReal bool

	// chownImplicitDirs makes implicit parent directories root:root, as archive.Unpack (the
	// overlay driver) does; archive.UnpackLayer (vfs) keeps the group a setgid parent passes down.
	chownImplicitDirs bool
}

func openTree(root string) (*tree, error) {
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open layer root", Path: root, Err: err}
	}
	real, err := os.Readlink(fdPath(fd))
	if err != nil {
		closeFd(fd)
		return nil, fmt.Errorf("finding the real path of the layer root %q (is /proc mounted?): %w", root, err)
	}
	return &tree{rootFd: fd, rootReal: real, cacheFd: -1}, nil
}

func (t *tree) close() {
	t.dropCache()
	closeFd(t.rootFd)
}

// closeFd closes a descriptor this package only looked up or read through: closing it cannot
// lose data, so its error says nothing.
func closeFd(fd int) { _ = unix.Close(fd) }

// closeQuietly is closeFd for an *os.File read from.
func closeQuietly(f *os.File) { _ = f.Close() }

// fdPath names an open descriptor through /proc, for the few calls that have no *at or f* variant.
func fdPath(fd int) string {
	return "/proc/self/fd/" + strconv.Itoa(fd)
}

// openDir opens the existing directory dir (relative to the root, resolved inside it) as O_PATH.
// The caller closes the result.
func (t *tree) openDir(dir string) (int, error) {
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: resolveFlags}
	for tries := 0; ; tries++ {
		fd, err := unix.Openat2(t.rootFd, dir, &how)
		// RESOLVE_IN_ROOT answers EAGAIN when a concurrent rename could have confused ".." handling.
		if (err == unix.EAGAIN && tries < 16) || err == unix.EINTR {
			continue
		}
		if err == unix.ENOSYS {
			return -1, errors.New("openat2 is not available: Linux 5.6 or newer is required")
		}
		return fd, err
	}
}

// parent returns a handle of directory dir, creating missing directories on the way. The handle is
// owned by the cache: it stays valid until the next call of parent or close, even if invalidate is
// called in between, so a caller may use it for the whole entry.
func (t *tree) parent(dir string) (int, error) {
	return t.cachedDir(dir, true)
}

// lookupDir is parent without creating anything.
func (t *tree) lookupDir(dir string) (int, error) {
	return t.cachedDir(dir, false)
}

func (t *tree) cachedDir(dir string, create bool) (int, error) {
	if dir == "." {
		return t.rootFd, nil
	}
	if t.cacheValid && t.cacheFd >= 0 && t.cacheDir == dir {
		return t.cacheFd, nil
	}
	t.dropCache()
	fd, err := t.openDir(dir)
	if errors.Is(err, unix.ENOENT) && create {
		fd, err = t.mkdirAll(dir, 0)
	}
	if err != nil {
		return -1, err
	}
	t.cacheDir, t.cacheFd, t.cacheValid = dir, fd, true
	return fd, nil
}

// invalidate is called whenever something is removed: a cached path may now resolve to another
// directory (or to one that is no longer linked into the tree).
func (t *tree) invalidate() { t.cacheValid = false }

func (t *tree) dropCache() {
	if t.cacheFd >= 0 {
		closeFd(t.cacheFd)
	}
	t.cacheDir, t.cacheFd, t.cacheValid, t.cacheHasReal = "", -1, false, false
}

// realPath is inRootPath of a handle parent or lookupDir returned, remembered for the cached one:
// where the directory is, through no symlink.
func (t *tree) realPath(fd int) (string, error) {
	if fd == t.rootFd {
		return "", nil
	}
	if fd == t.cacheFd && t.cacheHasReal {
		return t.cacheReal, nil
	}
	real, err := t.inRootPath(fd)
	if err == nil && fd == t.cacheFd {
		t.cacheReal, t.cacheHasReal = real, true
	}
	return real, err
}

// mkdirAll creates the missing directories of dir (see mkdirIn for their mode and owner) and returns an O_PATH handle of it. Each prefix is resolved inside the root, so symlinks among
// the parents are followed the way the container will see them.
func (t *tree) mkdirAll(dir string, hops int) (int, error) {
	if hops > maxSymlinkHops {
		return -1, unix.ELOOP
	}
	cur := -1 // handle of dir[:start-1]; -1 means the root
	defer func() {
		if cur >= 0 {
			closeFd(cur)
		}
	}()
	for start, i := 0, 0; i <= len(dir); i++ {
		if i < len(dir) && dir[i] != '/' {
			continue
		}
		comp := dir[start:i]
		start = i + 1
		if comp == "" {
			continue
		}
		fd, err := t.openDir(dir[:i])
		if errors.Is(err, unix.ENOENT) {
			parentFd := t.rootFd
			if cur >= 0 {
				parentFd = cur
			}
			if err = t.mkdirIn(parentFd, comp, hops); err == nil {
				fd, err = t.openDir(dir[:i])
			}
		}
		if err != nil {
			return -1, err
		}
		if cur >= 0 {
			closeFd(cur)
		}
		cur = fd
	}
	fd := cur
	cur = -1
	if fd < 0 { // dir had no components ("" or "/"): the root itself
		return t.openDir(".")
	}
	return fd, nil
}

// mkdirIn creates directory name in parentFd, whose path inside the root failed to resolve with
// ENOENT. If name already exists, it must be a dangling symlink: like containers/storage (SecureJoin
// then MkdirAll), create the directory it points to, inside the root.
func (t *tree) mkdirIn(parentFd int, name string, hops int) error {
	err := unix.Mkdirat(parentFd, name, implicitDirMode)
	if err == nil {
		return t.implicitDirMeta(parentFd, name)
	}
	if !errors.Is(err, unix.EEXIST) {
		return os.NewSyscallError("mkdirat", err)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(parentFd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return os.NewSyscallError("fstatat", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		return fmt.Errorf("%q exists but cannot be resolved: %w", name, unix.ENOTDIR)
	}
	target, err := readlinkAt(parentFd, name)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(target, "/") {
		// Relative to the symlink's own directory. Not cleaned lexically: ".." after a symlink
		// must be resolved by the kernel, inside the root.
		where, err := t.inRootPath(parentFd)
		if err != nil {
			return err
		}
		target = where + "/" + target
	}
	fd, err := t.mkdirAll(strings.TrimLeft(target, "/"), hops+1)
	if err != nil {
		return fmt.Errorf("creating the directory that symlink %q points to (%q): %w", name, target, err)
	}
	closeFd(fd)
	return nil
}

// implicitDirMeta gives a directory that mkdirIn has just created the owner and mode the storage
// library's MkdirAll gives it: implicitDirMode whatever this process's umask, keeping the setgid
// bit the kernel set below a setgid parent; root:root if chownImplicitDirs, else the owner the
// kernel gave it (root, and a setgid parent's group).
func (t *tree) implicitDirMeta(parentFd int, name string) error {
	if t.chownImplicitDirs {
		if err := unix.Fchownat(parentFd, name, 0, 0, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return os.NewSyscallError("fchownat", err)
		}
	}
	var st unix.Stat_t
	if err := unix.Fstatat(parentFd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return os.NewSyscallError("fstatat", err)
	}
	return chmodAt(parentFd, name, implicitDirMode|st.Mode&unix.S_ISGID)
}

// inRootPath returns the path of directory fd relative to the root ("" for the root itself).
func (t *tree) inRootPath(fd int) (string, error) {
	real, err := os.Readlink(fdPath(fd))
	if err != nil {
		return "", err
	}
	if real == t.rootReal {
		return "", nil
	}
	rel, ok := strings.CutPrefix(real, strings.TrimSuffix(t.rootReal, "/")+"/")
	if !ok {
		return "", fmt.Errorf("directory %q is not below the layer root %q", real, t.rootReal)
	}
	return rel, nil
}

func readlinkAt(dirFd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirFd, name, buf)
		if err != nil {
			return "", os.NewSyscallError("readlinkat", err)
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// removeAll removes name from dirFd, recursively if it is a directory, never following symlinks.
func removeAll(dirFd int, name string) error {
	err := unix.Unlinkat(dirFd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) {
		return os.NewSyscallError("unlinkat", err)
	}
	fd, err := unix.Openat(dirFd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("openat", err)
	}
	dir := os.NewFile(uintptr(fd), name)
	names, err := dir.Readdirnames(-1)
	if err == nil {
		for _, child := range names {
			if err = removeAll(fd, child); err != nil {
				break
			}
		}
	}
	closeQuietly(dir)
	if err != nil {
		return err
	}
	return os.NewSyscallError("unlinkat", unix.Unlinkat(dirFd, name, unix.AT_REMOVEDIR))
}

// chmodAt sets the mode of name without following a symlink there (fchmodat2, Linux 6.6). Older
// kernels (and seccomp filters that answer EPERM to syscalls they do not know) lack it; the
// fallback checks that name is no symlink first, and is only used on nodes this package has just
// created itself.
func chmodAt(dirFd int, name string, mode uint32) error {
	err := unix.Fchmodat(dirFd, name, mode, unix.AT_SYMLINK_NOFOLLOW)
	if err == unix.EOPNOTSUPP || err == unix.ENOSYS || err == unix.EPERM {
		var st unix.Stat_t
		if err = unix.Fstatat(dirFd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
			if st.Mode&unix.S_IFMT == unix.S_IFLNK {
				return nil // symlinks have no mode of their own
			}
			err = unix.Fchmodat(dirFd, name, mode, 0)
		}
	}
	return os.NewSyscallError("fchmodat", err)
}
