package unpack

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// opaqueXattr marks an opaque directory for the kernel's overlay driver, as Podman's own store does.
// Only rootful readers can read trusted.* attributes; HideLower represents what it hides by
// whiteouts instead, which every reader honours. (A user.overlay.opaque attribute would do for
// rootless readers too, but rootful containers see user.* attributes, and `buildah commit` of
// Podman 4.3 copies them into new layers, where they hide files from rootless readers.)
const opaqueXattr = "trusted.overlay.opaque"

// literalResolve opens a path inside a layer literally: a symlink there is an entry of the layer,
// which an overlay mount never follows to find a directory.
const literalResolve = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// HideLower makes a layer's opaque directories opaque for readers that cannot read
// trusted.overlay.opaque (rootless Podman). For each of opaqueDirs (Result.OpaqueDirs) that still
// carries the attribute and below which the lower layers show anything, it writes a whiteout (a 0/0
// character device) for every entry an overlay mount of the lower layers shows there and this layer
// does not have, does the same in each directory of this layer inside it that the lower layers show
// as a directory too (the kernel hides an opaque directory's whole lower subtree), and removes the
// attribute from those directories: the kernel lists a directory that is not merged with lower
// ones as it is, whiteouts included (verified on Linux 6.18), so an opaque directory must not hold
// whiteouts. Rootful and rootless readers then see the same tree. The flag on the layer's root is
// ignored by the kernel (verified) and kept as it is.
//
// root is the layer's diff dir, lowers the diff dirs of the layers below it (their contents final),
// nearest first. Directory times stay as the layer set them. The whiteouts are not part of the layer's
// tar, so its tar-split data and diff ID do not change.
func HideLower(root string, opaqueDirs, lowers []string) error {
	if len(opaqueDirs) == 0 || len(lowers) == 0 {
		return nil
	}
	t, err := openTree(root)
	if err != nil {
		return err
	}
	defer t.close()
	var lowerRoots []int
	defer func() { closeAll(lowerRoots) }()
	for _, l := range lowers {
		fd, err := unix.Open(l, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return &os.PathError{Op: "open lower layer", Path: l, Err: err}
		}
		lowerRoots = append(lowerRoots, fd)
	}
	for _, dir := range opaqueDirs { // sorted: a directory comes before those inside it
		if dir == "." {
			continue
		}
		if err := hideBelow(t.rootFd, dir, lowerRoots); err != nil {
			return fmt.Errorf("opaque directory %q: %w", dir, err)
		}
	}
	return nil
}

// hideBelow does HideLower's work for one opaque directory dir of the layer.
func hideBelow(rootFd int, dir string, lowerRoots []int) error {
	fd, err := openLiteral(rootFd, dir)
	if isNoDir(err) {
		return nil // a later entry of the layer replaced it
	}
	if err != nil {
		return err
	}
	defer func() { _ = unix.Close(fd) }()
	if !isOpaque(fd) {
		return nil // done already, inside an opaque directory above it
	}
	stack, err := mergedPath(lowerRoots, dir)
	if err != nil {
		return err
	}
	defer closeAll(stack)
	return hideIn(fd, dir, stack)
}

// hideIn writes whiteouts into the layer's directory fd (dir, relative to the root) for what the
// merged lower directories stack show and fd lacks, recurses into the directories both have, and
// removes the opaque flag if the lower directories show anything.
func hideIn(fd int, dir string, stack []int) error {
	visible, err := mergedNames(stack)
	if err != nil || len(visible) == 0 {
		return err
	}
	var before unix.Stat_t
	if err := unix.Fstat(fd, &before); err != nil {
		return os.NewSyscallError("fstat", err)
	}
	for _, name := range slices.Sorted(maps.Keys(visible)) {
		var st unix.Stat_t
		err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		switch {
		case err == unix.ENOENT:
			if err := unix.Mknodat(fd, name, unix.S_IFCHR, 0); err != nil {
				err = fmt.Errorf("whiteout for %q of a lower layer: %w", path.Join(dir, name), os.NewSyscallError("mknodat", err))
				if errors.Is(err, unix.EPERM) { // as for the layer's own whiteouts (see whiteout)
					err = fmt.Errorf("%w (this filesystem or user cannot create overlay whiteouts: run as root, or publish a vfs store with --driver vfs)", err)
				}
				return err
			}
		case err != nil:
			return os.NewSyscallError("fstatat", err)
		case st.Mode&unix.S_IFMT == unix.S_IFDIR && visible[name]:
			if err := hideInChild(fd, path.Join(dir, name), name, stack); err != nil {
				return err
			}
		}
	}
	if err := unix.Fremovexattr(fd, opaqueXattr); err != nil && err != unix.ENODATA {
		return fmt.Errorf("removing %s from %q: %w", opaqueXattr, dir, err)
	}
	// Back to the times the layer gave the directory (adding entries changed them).
	ts := []unix.Timespec{before.Atim, before.Mtim}
	return os.NewSyscallError("utimensat", unix.UtimesNanoAt(unix.AT_FDCWD, fdPath(fd), ts, 0))
}

func hideInChild(parent int, dir, base string, stack []int) error {
	fd, err := unix.Openat(parent, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("openat", err)
	}
	defer func() { _ = unix.Close(fd) }()
	next, err := mergedAt(stack, base)
	defer closeAll(next)
	if err != nil {
		return err
	}
	return hideIn(fd, dir, next)
}

// mergedPath returns the lower directories a mount of the layers below merges at dir, found as the
// kernel looks the path up from the layer roots, one component after the other.
func mergedPath(roots []int, dir string) ([]int, error) {
	var stack []int
	for i, name := range strings.Split(dir, "/") {
		from := stack
		if i == 0 {
			from = roots
		}
		next, err := mergedAt(from, name)
		closeAll(stack)
		if err != nil {
			return nil, err
		}
		stack = next
	}
	return stack, nil
}

// mergedAt returns the directories an overlay mount merges at name inside the merged directory made
// of stack (nearest first), as the kernel's lookup finds them: the directories down to the first
// layer that has a whiteout or another non-directory there, or an opaque directory (included). The
// caller closes them.
func mergedAt(stack []int, name string) ([]int, error) {
	var next []int
	for _, fd := range stack {
		var st unix.Stat_t
		err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == unix.ENOENT {
			continue
		}
		if err != nil {
			closeAll(next)
			return nil, os.NewSyscallError("fstatat", err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			break
		}
		child, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			closeAll(next)
			return nil, os.NewSyscallError("openat", err)
		}
		next = append(next, child)
		if isOpaque(child) {
			break
		}
	}
	return next, nil
}

// mergedNames returns the entries a merged directory made of stack shows (the nearest layer having
// a name decides; a whiteout hides it), each with whether it is a directory.
func mergedNames(stack []int) (map[string]bool, error) {
	decided := map[string]bool{}
	visible := map[string]bool{}
	for _, fd := range stack {
		// A descriptor of its own: reading a directory moves the offset, and Close closes it.
		dup, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, os.NewSyscallError("openat", err)
		}
		f := os.NewFile(uintptr(dup), ".")
		entries, err := f.ReadDir(-1)
		_ = f.Close()
		if err != nil {
			return nil, fmt.Errorf("reading a lower layer: %w", err)
		}
		for _, e := range entries {
			name := e.Name()
			if decided[name] {
				continue
			}
			decided[name] = true
			if e.Type()&os.ModeCharDevice != 0 {
				var st unix.Stat_t
				if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
					return nil, os.NewSyscallError("fstatat", err)
				}
				if st.Rdev == 0 {
					continue // a whiteout
				}
			}
			visible[name] = e.IsDir()
		}
	}
	return visible, nil
}

// openLiteral opens directory dir below rootFd for reading, following no symlink.
func openLiteral(rootFd int, dir string) (int, error) {
	how := unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: literalResolve}
	for tries := 0; ; tries++ {
		fd, err := unix.Openat2(rootFd, dir, &how)
		if err == unix.EINTR || (err == unix.EAGAIN && tries < 16) {
			continue
		}
		if err != nil {
			return -1, &os.PathError{Op: "openat2", Path: dir, Err: err}
		}
		return fd, nil
	}
}

// isNoDir says whether err means that there is no directory at the path (missing, not a directory,
// or reached through a symlink).
func isNoDir(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV)
}

// isOpaque says whether directory fd carries trusted.overlay.opaque=y.
func isOpaque(fd int) bool {
	buf := make([]byte, 8)
	n, err := unix.Fgetxattr(fd, opaqueXattr, buf)
	return err == nil && string(buf[:n]) == "y"
}

func closeAll(fds []int) {
	for _, fd := range fds {
		_ = unix.Close(fd)
	}
}
