package storageconf

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// target is a configuration file reached through its open directory, so that every step
// (read, temp file, rename) happens in the same directory even if paths change meanwhile.
type target struct {
	dir  *os.File
	path string // for messages
	base string
}

// openTarget opens file's directory.
//
// The caller's own paths have their symlinks resolved first: a symlinked
// /etc/containers/storage.conf is edited where it lives, not replaced by a regular file.
// Below beneath (another user's home, written by root) no symlink is followed at all, or
// that user could point root's write anywhere; new directories there belong to owner.
func openTarget(file string, makeDirs bool, beneath string, owner *Owner) (*target, error) {
	file, err := filepath.Abs(file)
	if err != nil {
		return nil, err
	}
	if beneath != "" {
		return openBeneath(file, makeDirs, beneath, owner)
	}
	resolved, err := filepath.EvalSymlinks(file)
	switch {
	case err == nil:
		file = resolved
	case errors.Is(err, os.ErrNotExist):
		if fi, err := os.Lstat(file); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			return nil, fmt.Errorf("%s is a symlink to a missing file: create the file it points to, or remove the link", file)
		}
		dir := filepath.Dir(file)
		if makeDirs {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, err
			}
		}
		rdir, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return nil, fmt.Errorf("directory of %s: %w", file, err)
		}
		file = filepath.Join(rdir, filepath.Base(file))
	default:
		return nil, err
	}
	dir, err := os.Open(filepath.Dir(file))
	if err != nil {
		return nil, err
	}
	return &target{dir: dir, path: file, base: filepath.Base(file)}, nil
}

// openBeneath opens file's directory through an os.Root at beneath (as layout writes its store):
// no path, symlink or ".." planted by beneath's owner leads the write out of it. Directories it
// creates belong to owner.
func openBeneath(file string, makeDirs bool, beneath string, owner *Owner) (*target, error) {
	rel, err := filepath.Rel(beneath, file)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return nil, fmt.Errorf("%s is not inside %s", file, beneath)
	}
	// The home directory itself may be a symlink (/home -> /var/home); its owner cannot change that.
	root, err := os.OpenRoot(beneath)
	if err != nil {
		return nil, err
	}
	defer func() { _ = root.Close() }() // the directory opened below stays open
	if makeDirs {
		if err := mkdirsOwned(root, filepath.Dir(rel), owner); err != nil {
			return nil, confined(err, beneath)
		}
	}
	dir, err := root.Open(filepath.Dir(rel))
	if err != nil {
		return nil, confined(err, beneath)
	}
	return &target{dir: dir, path: file, base: filepath.Base(file)}, nil
}

// mkdirsOwned creates the missing directories of rel in root (mode 0700), owned by owner.
func mkdirsOwned(root *os.Root, rel string, owner *Owner) error {
	path := ""
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		if part == "." {
			continue
		}
		path = filepath.Join(path, part)
		err := root.Mkdir(path, 0o700)
		switch {
		case errors.Is(err, os.ErrExist):
			continue
		case err != nil:
			return err
		case owner != nil:
			if err := root.Lchown(path, owner.UID, owner.GID); err != nil {
				return err
			}
		}
	}
	return nil
}

// confined says where the failed path was opened: os.Root's own error for a symlink that leads
// out ("path escapes from parent") does not say why that matters.
func confined(err error, beneath string) error {
	return fmt.Errorf("%w (inside %s, where no symlink may lead out)", err, beneath)
}

// close closes the directory, which was only read (written entries are synced by write).
func (t *target) close() { _ = t.dir.Close() }

// existing describes the file as found: nil if it does not exist.
type existing struct {
	data     []byte
	mode     os.FileMode
	uid, gid int
	label    []byte // SELinux label, kept on the new file
}

func (t *target) read() (*existing, error) { return t.readName(t.base) }

// readName reads the file name in the target's directory (the target itself, or a file beside it).
func (t *target) readName(name string) (*existing, error) {
	path := filepath.Join(filepath.Dir(t.path), name)
	fd, err := unix.Openat(int(t.dir.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil, nil
	case errors.Is(err, unix.ELOOP):
		return nil, fmt.Errorf("%s is a symlink: refusing to follow it", path)
	case err != nil:
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer func() { _ = f.Close() }() // read only
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	ex := &existing{data: data, mode: os.FileMode(st.Mode & 0o7777), uid: int(st.Uid), gid: int(st.Gid)}
	if n, err := unix.Fgetxattr(fd, "security.selinux", nil); err == nil && n > 0 {
		ex.label = make([]byte, n)
		if n, err = unix.Fgetxattr(fd, "security.selinux", ex.label); err == nil {
			ex.label = ex.label[:n]
		} else {
			ex.label = nil
		}
	}
	return ex, nil
}

// write replaces the file with data atomically (temp file, fsync, rename, fsync of the
// directory), giving it like's mode, owner and label. It first checks that the file is
// still as read (was == nil: still absent), so a concurrent edit is not overwritten.
func (t *target) write(name string, data []byte, like *existing, was *existing) error {
	tmp := "." + name + ".cargohold-" + rand.Text()
	fd, err := unix.Openat(int(t.dir.Fd()), tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("cannot write in %s: %w", filepath.Dir(t.path), err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	done := false
	defer func() {
		if !done {
			// The write failed and says why; the temp file goes, as far as it can.
			_ = f.Close()
			_ = unix.Unlinkat(int(t.dir.Fd()), tmp, 0)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", t.path, err)
	}
	if err := f.Chmod(like.mode); err != nil {
		return fmt.Errorf("keeping the mode of %s: %w", t.path, err)
	}
	if like.uid != os.Geteuid() || like.gid != os.Getegid() {
		if err := f.Chown(like.uid, like.gid); err != nil {
			return fmt.Errorf("keeping the owner %d:%d of %s: %w", like.uid, like.gid, t.path, err)
		}
	}
	if like.label != nil {
		// Best effort: without SELinux the attribute cannot be set, and is not needed.
		_ = unix.Fsetxattr(fd, "security.selinux", like.label, 0)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", t.path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", t.path, err)
	}
	if name == t.base {
		now, err := t.read()
		if err != nil {
			return err
		}
		if (now == nil) != (was == nil) || now != nil && !bytes.Equal(now.data, was.data) {
			return fmt.Errorf("%s changed while cargohold was editing it; nothing was written: run again", t.path)
		}
	}
	if err := unix.Renameat(int(t.dir.Fd()), tmp, int(t.dir.Fd()), name); err != nil {
		return fmt.Errorf("replacing %s: %w", filepath.Join(filepath.Dir(t.path), name), err)
	}
	done = true
	if err := t.dir.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", filepath.Dir(t.path), err)
	}
	return nil
}

// remove deletes the file name beside (or as) the target. For the target itself it first checks that
// the file is still as read (was), so a concurrent edit is not lost.
func (t *target) remove(name string, was *existing) error {
	if name == t.base {
		now, err := t.read()
		if err != nil {
			return err
		}
		if now == nil || !bytes.Equal(now.data, was.data) {
			return fmt.Errorf("%s changed while cargohold was editing it; nothing was written: run again", t.path)
		}
	}
	if err := unix.Unlinkat(int(t.dir.Fd()), name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("removing %s: %w", filepath.Join(filepath.Dir(t.path), name), err)
	}
	if err := t.dir.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", filepath.Dir(t.path), err)
	}
	return nil
}
