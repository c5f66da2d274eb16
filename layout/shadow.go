package layout

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Shadow stores. A store in a CVMFS repository cannot be written in place: a transaction refuses the
// overlay whiteouts of an image that deletes files, and only `cvmfs_server ingest` brings them in, in
// a publish of its own. So a publish into such a store runs on a shadow instead, a local store that
// stands for the published one: its records, image data and its layers' small files (link, lower,
// lower-layers, empty/, the catalog marker) are copies, and each layer's contents (diff/) and
// tar-split are symlinks to where the published store holds them, read through the repository's
// client mount. Nothing of a layer's contents is copied, but the opaque directories of a new layer
// see the layers below it as they are. The publish writes the shadow as any store; ShadowChanges
// then lists what it changed: the new layer dirs (to ingest whole) and the files to write or remove
// in the published store (in a transaction).
//
// A stand-in is a symlink in the shadow whose target is the same path in the published store: it
// stands for that path, unchanged. Only overlay stores have shadows: a vfs layer starts as a copy of
// its parent's tree, which a symlink cannot stand for.

// Shadow makes dir, which must not exist, a shadow of the store at published (read-only; a path that
// does not exist or an empty directory: a new store). A path holding something other than a cargohold
// store is refused with an error wrapping ErrNotStore, as publishing there would be.
func Shadow(dir, published string) error {
	f, err := classify(published)
	if err != nil {
		return err
	}
	switch f.kind {
	case kindForeign:
		return f.why
	case kindStore:
		d, err := recordedDriver(os.DirFS(published), published, f.marker)
		if err != nil {
			return err
		}
		if d == VFS {
			return fmt.Errorf("%s is a vfs store: only overlay stores are published through a shadow", published)
		}
	}
	if err := os.Mkdir(dir, dirMode); err != nil {
		return err
	}
	if f.kind == kindMissing {
		return nil
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer func() { _ = root.Close() }() // a directory handle
	return walkRel(published, func(p, rel string, e fs.DirEntry) error {
		switch {
		case notMirrored(rel):
			return skip(e)
		case standsIn(rel):
			return skip(e, os.Symlink(p, filepath.Join(dir, rel)))
		}
		return CopyEntry(root, p, rel)
	})
}

// notMirrored says whether rel is a path that a shadow neither copies nor brings back: cargohold's
// writer lock and staging area, which each writer has for itself, and its record of the checked
// links (recover.go), which only saves an open some reads: never worth a transaction of its own.
func notMirrored(rel string) bool {
	return rel == writerLockName || rel == linksCheckedName || rel == stagingDir || strings.HasPrefix(rel, stagingDir+"/")
}

// standsIn says whether a shadow holds rel as a stand-in: a layer's contents or tar-split.
func standsIn(rel string) bool {
	p := pathsFor(Overlay)
	if dir, name := path.Split(rel); name == diffName {
		parent, id := path.Split(strings.TrimSuffix(dir, "/"))
		return strings.TrimSuffix(parent, "/") == p.layerRoot && idRE.MatchString(id)
	}
	id, ok := strings.CutSuffix(strings.TrimPrefix(rel, p.layersDir+"/"), tarSplitSuffix)
	return ok && strings.HasPrefix(rel, p.layersDir+"/") && idRE.MatchString(id)
}

// walkRel walks the tree at root as filepath.WalkDir does, giving fn each path with its slash-separated
// path relative to root ("." for root).
func walkRel(root string, fn func(p, rel string, e fs.DirEntry) error) error {
	return filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		return fn(p, filepath.ToSlash(rel), e)
	})
}

// skip ends a walk's visit of e: it does not go into a directory. err, if any, is the visit's error.
func skip(e fs.DirEntry, err ...error) error {
	if joined := errors.Join(err...); joined != nil {
		return joined
	}
	if e.IsDir() {
		return fs.SkipDir
	}
	return nil
}

// Changes is what a publish into a shadow changed, as paths relative to the store.
type Changes struct {
	// NewLayers are the layer dirs of layers the published store does not record (overlay/<id>):
	// whole trees to bring in, whiteouts included. Published may hold an unrecorded dir of the same
	// name, which a crashed run left: the new one replaces it.
	NewLayers []string
	// Identity lists what makes the path a cargohold store (the private dir and the marker), where
	// the published store lacks it: a new store. It is to be brought in with the new layers, so that
	// the next run takes a path holding layer dirs of a failed first run for the store it is. Write
	// lists these paths too.
	Identity []string
	// Write lists the directories, files and symlinks outside NewLayers that are new or differ from
	// the published store's (type, mode, owner, content or target), parents before what they hold,
	// and the records last: layers.json, then images.json, each followed by its lock file.
	Write []string
	// Remove lists what the published store holds outside its layers' contents that the shadow no
	// longer has (an image's data after a prune, leftovers of a crashed run); a directory stands for
	// everything in it.
	Remove []string
}

// Empty says whether the publish changed nothing.
func (c Changes) Empty() bool {
	return len(c.NewLayers) == 0 && len(c.Write) == 0 && len(c.Remove) == 0
}

// ShadowChanges compares the shadow at dir, after a publish into it, with the published store it
// was made from (Shadow), and lists what the published store needs to become the shadow.
func ShadowChanges(dir, published string) (Changes, error) {
	p := pathsFor(Overlay)
	_, shadowLayers, err := readRecords(os.DirFS(dir), p)
	if err != nil {
		return Changes{}, fmt.Errorf("%s: %w", dir, err)
	}
	recorded := map[string]bool{}
	if _, err := os.Lstat(filepath.Join(published, p.layersJSON)); err == nil {
		_, layers, err := readRecords(os.DirFS(published), p)
		if err != nil {
			return Changes{}, fmt.Errorf("%s: %w", published, err)
		}
		for _, l := range layers {
			recorded[l.ID] = true
		}
	}
	newLayer := map[string]bool{}
	var c Changes
	for _, l := range shadowLayers {
		if !recorded[l.ID] {
			newLayer[p.layerDir(l.ID)] = true
			c.NewLayers = append(c.NewLayers, p.layerDir(l.ID))
		}
	}
	slices.Sort(c.NewLayers)
	for _, rel := range []string{privateDir, markerName} {
		if _, err := os.Lstat(filepath.Join(published, rel)); errors.Is(err, fs.ErrNotExist) {
			c.Identity = append(c.Identity, rel)
		}
	}
	if c.Write, err = shadowWrites(dir, published, newLayer); err != nil {
		return Changes{}, err
	}
	if c.Remove, err = shadowRemovals(dir, published, newLayer); err != nil {
		return Changes{}, err
	}
	return c, nil
}

// shadowWrites lists what of the shadow at dir is new or differs from published, outside new layers.
func shadowWrites(dir, published string, newLayer map[string]bool) ([]string, error) {
	var writes []string
	err := walkRel(dir, func(p, rel string, e fs.DirEntry) error {
		pub := filepath.Join(published, rel)
		if notMirrored(rel) || newLayer[rel] {
			return skip(e)
		}
		if target, err := os.Readlink(p); err == nil && target == pub {
			return nil // a stand-in: the published path, unchanged
		}
		same, err := sameEntry(p, pub)
		if err != nil {
			return err
		}
		if !same {
			writes = append(writes, rel)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return recordsLast(writes), nil
}

// recordsLast sorts paths, parents first, with the record files last in the order a publish writes
// them: layers.json, then images.json, each followed by its lock file.
func recordsLast(paths []string) []string {
	p := pathsFor(Overlay)
	order := []string{p.layersJSON, path.Join(p.layersDir, layersLock), p.imagesJSON, path.Join(p.imagesDir, imagesLock)}
	rank := func(s string) int { return slices.Index(order, s) } // -1 for all others
	slices.SortFunc(paths, func(a, b string) int {
		if ra, rb := rank(a), rank(b); ra != rb {
			return ra - rb
		}
		return strings.Compare(a, b)
	})
	return paths
}

// sameEntry says whether the published path pub exists and equals the shadow's path p in type, mode,
// owner and content (regular files) or target (symlinks).
func sameEntry(p, pub string) (bool, error) {
	var a, b unix.Stat_t
	if err := unix.Lstat(p, &a); err != nil {
		return false, &os.PathError{Op: "lstat", Path: p, Err: err}
	}
	if err := unix.Lstat(pub, &b); errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return false, nil
	} else if err != nil {
		return false, &os.PathError{Op: "lstat", Path: pub, Err: err}
	}
	if a.Mode != b.Mode || a.Uid != b.Uid || a.Gid != b.Gid {
		return false, nil
	}
	switch a.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if a.Size != b.Size {
			return false, nil
		}
		return sameContent(p, pub)
	case unix.S_IFLNK:
		ta, err := os.Readlink(p)
		if err != nil {
			return false, err
		}
		tb, err := os.Readlink(pub)
		return ta == tb, err
	}
	return true, nil
}

func sameContent(a, b string) (bool, error) {
	da, err := os.ReadFile(a) // records and image data: small files
	if err != nil {
		return false, err
	}
	db, err := os.ReadFile(b)
	if err != nil {
		return false, err
	}
	return bytes.Equal(da, db), nil
}

// shadowRemovals lists what published holds outside its layers' contents that the shadow at dir does
// not. It never goes into what a stand-in stands for.
func shadowRemovals(dir, published string, newLayer map[string]bool) ([]string, error) {
	if _, err := os.Lstat(published); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	var removals []string
	err := walkRel(published, func(p, rel string, e fs.DirEntry) error {
		if notMirrored(rel) || newLayer[rel] {
			return skip(e) // a new layer replaces an unrecorded dir of the same name whole
		}
		sp := filepath.Join(dir, rel)
		if target, err := os.Readlink(sp); err == nil && target == p {
			return skip(e) // a stand-in: its contents are the published store's own
		}
		if _, err := os.Lstat(sp); errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
			removals = append(removals, rel)
			return skip(e)
		} else if err != nil {
			return err
		}
		return nil
	})
	return removals, err
}

// RecordFiles are the record files of a store of driver d (layers.json, images.json), relative to
// the store.
func RecordFiles(d Driver) []string {
	p := pathsFor(d)
	return []string{p.layersJSON, p.imagesJSON}
}
