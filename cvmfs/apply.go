package cvmfs

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"syscall"

	"github.com/cargohold/cargohold/layout"
	"go.podman.io/storage/pkg/system"
	"golang.org/x/sys/unix"
)

// applyChanges makes the store at store (/cvmfs/REPO/..., inside an open transaction, the new layers
// ingested already) what the shadow is: it gives the ingested files what ingest dropped, writes the
// files that changed and removes what the shadow no longer has. Inside a transaction the order does
// not matter to readers (the revision changes at once); records still come last.
func applyChanges(shadow, store string, c layout.Changes) error {
	if err := os.MkdirAll(store, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(store)
	if err != nil {
		return err
	}
	defer func() { _ = root.Close() }() // a directory handle
	for _, d := range c.NewLayers {
		if err := fixIngested(root, shadow, d); err != nil {
			return fmt.Errorf("layer dir %s: %w", d, err)
		}
	}
	for _, rel := range c.Write {
		if err := layout.CopyEntry(root, filepath.Join(shadow, rel), rel); err != nil {
			return fmt.Errorf("writing %s: %w", path.Join(store, rel), err)
		}
	}
	for _, rel := range c.Remove {
		if err := root.RemoveAll(rel); err != nil {
			return fmt.Errorf("removing %s: %w", path.Join(store, rel), err)
		}
	}
	return nil
}

// fixIngested gives every file of the ingested layer dir d the owner, mode and image xattrs it has in
// the shadow, where they differ. Whiteouts are left alone: ingest keeps them as they are, and the
// transaction's own overlay mount hides them.
func fixIngested(root *os.Root, shadow, d string) error {
	return filepath.WalkDir(filepath.Join(shadow, d), func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var want unix.Stat_t
		if err := unix.Lstat(p, &want); err != nil {
			return &os.PathError{Op: "lstat", Path: p, Err: err}
		}
		if want.Mode&unix.S_IFMT == unix.S_IFCHR && want.Rdev == 0 {
			return nil
		}
		rel, err := filepath.Rel(shadow, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		fi, err := root.Lstat(rel)
		if err != nil {
			return fmt.Errorf("ingest did not bring in %s: %w", rel, err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		have := unix.Stat_t{Mode: st.Mode, Uid: st.Uid, Gid: st.Gid}
		if have.Mode&unix.S_IFMT != want.Mode&unix.S_IFMT {
			return fmt.Errorf("ingest brought in %s as another type of file (mode %o, want %o)", rel, have.Mode, want.Mode)
		}
		return fixMeta(root, p, rel, &want, &have)
	})
}

// fixMeta sets owner, mode and xattrs of rel (in root) to the shadow's (p, with stat want), in the
// order the kernel needs: chown clears setuid bits and file capabilities.
func fixMeta(root *os.Root, p, rel string, want, have *unix.Stat_t) error {
	symlink := want.Mode&unix.S_IFMT == unix.S_IFLNK
	if want.Uid != have.Uid || want.Gid != have.Gid {
		if err := root.Lchown(rel, int(want.Uid), int(want.Gid)); err != nil {
			return err
		}
		have.Mode = 0 // chown may have cleared setuid: set the mode again
	}
	if !symlink && want.Mode != have.Mode {
		if err := root.Chmod(rel, layout.StatMode(want.Mode)); err != nil {
			return err
		}
	}
	names, err := imageXattrs(p)
	if err != nil || len(names) == 0 {
		return err
	}
	return withParent(root, rel, func(target string) error {
		for _, name := range names {
			value, err := system.Lgetxattr(p, name)
			if err != nil {
				return err
			}
			if current, err := system.Lgetxattr(target, name); err == nil && bytes.Equal(current, value) {
				continue
			}
			if err := unix.Lsetxattr(target, name, value, 0); err != nil {
				return fmt.Errorf("setting %s on %s: %w", name, rel, err)
			}
		}
		return nil
	})
}

// withParent calls fn with a path of rel that goes through its parent directory as root resolved
// it (/proc/self/fd/N/name), for the l*xattr calls, which os.Root has none of.
func withParent(root *os.Root, rel string, fn func(target string) error) error {
	dir, name := path.Split(rel)
	if dir == "" {
		dir = "."
	}
	d, err := root.Open(dir)
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }() // a directory handle
	if name == "" {
		name = "."
	}
	return fn(fmt.Sprintf("/proc/self/fd/%d/%s", d.Fd(), name))
}
