package layout

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/cargohold/cargohold/internal/faultpoint"
	"golang.org/x/sys/unix"
)

// Every path in this file is relative to the store's os.Root, so no write can leave the store through a
// symlink or "..", whatever somebody put inside it.

const (
	dirMode  fs.FileMode = 0o755 // readers are other (non-root) users: every dir of the store is a+rx
	fileMode fs.FileMode = 0o644 // and every metadata file a+r

	// tempPrefix marks files that are not yet renamed into place. It is the prefix the storage library's
	// atomic writer uses too, so Open's cleanup also catches what a crashed Podman writer left.
	tempPrefix = ".tmp-"
)

// randomName returns a random name part for temp files and staging dirs (lower case, so that it never
// looks like an overlay/l/ link name).
func randomName() string { return strings.ToLower(rand.Text()) }

// mkdir creates dir with mode 0755 regardless of the umask. An existing directory is left as it is;
// an existing non-directory is an error.
func (s *Store) mkdir(dir string) error {
	err := s.root.Mkdir(dir, dirMode)
	if errors.Is(err, fs.ErrExist) {
		fi, serr := s.root.Lstat(dir)
		if serr != nil {
			return serr
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s exists and is not a directory", s.path(dir))
		}
		return nil
	}
	if err != nil {
		return err
	}
	return s.chmod(dir, dirMode)
}

// chmod sets mode through an open descriptor, so a symlink swapped in meanwhile is never followed.
func (s *Store) chmod(name string, mode fs.FileMode) error {
	f, err := s.root.OpenFile(name, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }() // opened to chmod or sync only: closing loses nothing
	return f.Chmod(mode)
}

// writeFile writes a small file that is not yet visible to readers (inside a staging dir), 0644.
func (s *Store) writeFile(name string, data []byte) error {
	f, err := s.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(fileMode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeFileAtomic replaces name with data so that a reader sees either the old or the new content and,
// after a crash, never a torn file: temp file beside the target, fsync, chmod 0644, rename, fsync dir.
func (s *Store) writeFileAtomic(name string, data []byte) error {
	return s.replaceFile(name, data, true)
}

// replaceFile is writeFileAtomic, without the fsyncs unless durable: for files that a later syncfs
// makes durable before anything refers to them (the big data of a new image).
func (s *Store) replaceFile(name string, data []byte, durable bool) (err error) {
	dir, base := path.Split(name)
	tmp := path.Join(dir, tempPrefix+base+"-"+randomName())
	f, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = s.root.Remove(tmp)
		}
	}()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(fileMode) // the umask may have narrowed the create mode
	}
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", s.path(name), err)
	}
	faultpoint.Hit(s.faultLabel(name) + "-temp-synced")
	if err := s.root.Rename(tmp, name); err != nil {
		return err
	}
	faultpoint.Hit(s.faultLabel(name) + "-renamed")
	if !durable {
		return nil
	}
	return s.syncDir(dir)
}

// faultLabel names the fault points of an atomic write of name (see package faultpoint).
func (s *Store) faultLabel(name string) string {
	switch {
	case name == s.paths.layersJSON:
		return "layers-json"
	case name == s.paths.imagesJSON:
		return "images-json"
	case strings.HasPrefix(name, s.paths.imagesDir+"/"):
		return "bigdata"
	}
	return "file"
}

// syncDir makes the entries of dir (renames, creations) durable.
func (s *Store) syncDir(dir string) error {
	if dir == "" {
		dir = "."
	}
	f, err := s.root.Open(dir)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }() // opened to chmod or sync only: closing loses nothing
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", s.path(dir), err)
	}
	return nil
}

// syncFS flushes everything written to the store's filesystem: one syncfs instead of an fsync per
// unpacked file, as the storage library does for layers (drivers.SyncModeFilesystem).
func (s *Store) syncFS() error {
	f, err := s.root.Open(".")
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }() // opened to chmod or sync only: closing loses nothing
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs on %s: %w", s.dir, err)
	}
	return nil
}
