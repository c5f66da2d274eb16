package layout

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"

	"golang.org/x/sys/unix"
)

// CopyEntry makes rel in root what the store entry src is: a directory, a regular file (written
// beside and renamed into place) or a symlink, with src's owner and mode (setuid, setgid, sticky too);
// what rel held before goes if it is of another kind (an existing directory keeps its contents). It
// copies what a store holds outside its layers' contents: a shadow of a store is made with it, and a
// shadow's changes are written back with it.
func CopyEntry(root *os.Root, src, rel string) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: src, Err: err}
	}
	kind := st.Mode & unix.S_IFMT
	fi, err := root.Lstat(rel)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if exists && (kind == unix.S_IFLNK || (kind == unix.S_IFDIR) != fi.IsDir() || fi.Mode()&fs.ModeSymlink != 0) {
		if err := root.RemoveAll(rel); err != nil {
			return err
		}
		exists = false
	}
	switch kind {
	case unix.S_IFDIR:
		if !exists {
			if err := root.Mkdir(rel, 0o700); err != nil {
				return err
			}
		}
	case unix.S_IFREG:
		if err := copyFileInto(root, src, rel); err != nil {
			return err
		}
	case unix.S_IFLNK:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return errors.Join(root.Symlink(target, rel), root.Lchown(rel, int(st.Uid), int(st.Gid)))
	default:
		return fmt.Errorf("%s: a store holds no file of type %o outside its layers", src, kind)
	}
	if err := root.Lchown(rel, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	return root.Chmod(rel, StatMode(st.Mode))
}

// copyFileInto copies the file src into rel through a temp file beside it.
func copyFileInto(root *os.Root, src, rel string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer func() { _ = in.Close() }() // read only
	tmp := path.Join(path.Dir(rel), ".tmp-cargohold-"+path.Base(rel))
	out, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, rel)
	}
	if err != nil {
		_ = root.Remove(tmp) // the error is the one to report
	}
	return err
}

// StatMode converts a stat mode's permission, setuid, setgid and sticky bits to an fs.FileMode.
func StatMode(mode uint32) fs.FileMode {
	m := fs.FileMode(mode & 0o777)
	for bit, fm := range map[uint32]fs.FileMode{unix.S_ISUID: fs.ModeSetuid, unix.S_ISGID: fs.ModeSetgid, unix.S_ISVTX: fs.ModeSticky} {
		if mode&bit != 0 {
			m |= fm
		}
	}
	return m
}
