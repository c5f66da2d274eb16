package layout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/cargohold/cargohold/layout/podmancheck"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/storage"
)

// CheckOptions say how thoroughly Check looks.
type CheckOptions struct {
	// Deep regenerates every layer's diff and compares it with its recorded diff ID (reads every
	// file of the store).
	Deep bool
}

// Problem is one thing in a store that Podman would trip over.
type Problem = podmancheck.Problem

// CheckReport is what Check found.
type CheckReport struct {
	Images int `json:"images"`
	Layers int `json:"layers"`
	// Problems are what readers would trip over: the store is broken while there are any.
	Problems []Problem `json:"problems"`
	// Leftovers of runs that did not finish: invisible to readers, removed by the next publish
	// (or Repair). Not listed while a writer runs (see WriterPID).
	Leftovers []Leftover `json:"leftovers"`
	// WriterPID is the cargohold run that held the writer lock during the check (0: none found).
	// Its staging dirs are work in progress, not leftovers.
	WriterPID int `json:"writer_pid,omitempty"`
}

// OK says the store has no problems (leftovers are not problems).
func (r *CheckReport) OK() bool { return len(r.Problems) == 0 }

// Check verifies the store at dir as Podman reads it, without locking it or writing to it: the
// metadata parses and holds no name, image or layer twice, every layer's ID is its chain ID on a
// recorded parent, and then everything podmancheck.Check verifies through the storage library (lock
// files, permissions, each image's names, big data, config, layers, links and lower files, and
// with opts.Deep every layer's content). The error is for a store that cannot be checked at all.
//
// A check that overlaps a publish or gc reads the metadata several times, as a Podman reader does, and
// may see a name or layer move between two reads. When it finds problems and images.json or
// layers.json changed while it ran, it runs again on the new state (up to checkAttempts times), so
// that what it reports are problems of one state of the store.
//
// It stops when ctx ends, with ctx's cause as the error (a deep check reads every file of the store).
func Check(ctx context.Context, dir string, opts CheckOptions) (*CheckReport, error) {
	dir, err := ResolveDir(dir)
	if err != nil {
		return nil, err
	}
	paths, err := identifiedPaths(dir)
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		before := readRecordFiles(dir, paths)
		r, err := checkOnce(ctx, dir, paths, opts)
		if err != nil || r.OK() || attempt == checkAttempts {
			return r, err
		}
		if bytes.Equal(before, readRecordFiles(dir, paths)) {
			return r, nil // the problems are the store's, not a write seen halfway
		}
	}
}

// checkAttempts bounds how often Check starts again because a writer changed the store meanwhile.
const checkAttempts = 5

// readRecordFiles returns the bytes of images.json and layers.json (what a writer replaces when it
// changes the store), to tell whether they changed; a file that cannot be read counts as empty.
func readRecordFiles(dir string, p storePaths) []byte {
	images, _ := os.ReadFile(filepath.Join(dir, filepath.FromSlash(p.imagesJSON)))
	layers, _ := os.ReadFile(filepath.Join(dir, filepath.FromSlash(p.layersJSON)))
	return append(append(images, 0), layers...)
}

// checkOnce is one run of Check's checks over the store at dir.
func checkOnce(ctx context.Context, dir string, paths storePaths, opts CheckOptions) (*CheckReport, error) {
	r := &CheckReport{Problems: []Problem{}, Leftovers: []Leftover{}}
	problem := func(format string, args ...any) {
		r.Problems = append(r.Problems, Problem{Message: fmt.Sprintf(format, args...)})
	}
	images, layers, err := readRecords(os.DirFS(dir), paths)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", dir, err)
	} else if err != nil {
		problem("%v", err)
		return r, nil
	}
	r.Images, r.Layers = len(images), len(layers)
	checkRecords(images, layers, problem)

	if pid := lockHolder(filepath.Join(dir, filepath.FromSlash(writerLockName))); pid != 0 {
		r.WriterPID = pid
	} else if r.Leftovers, err = findLeftovers(os.DirFS(dir), paths, layers, images); err != nil {
		return nil, err
	}
	if r.Leftovers == nil {
		r.Leftovers = []Leftover{}
	}

	problems, err := podmancheck.Check(ctx, dir, podmancheck.Options{Deep: opts.Deep, Driver: string(paths.driver)})
	if err != nil {
		return nil, err
	}
	r.Problems = append(r.Problems, problems...)
	return r, nil
}

// checkRecords checks what the storage library takes on trust from images.json and layers.json.
func checkRecords(images []storage.Image, layers []storage.Layer, problem func(string, ...any)) {
	byID := map[string]storage.Layer{}
	for _, l := range layers {
		if _, dup := byID[l.ID]; dup {
			problem("layers.json records layer %s twice", l.ID)
		}
		byID[l.ID] = l
	}
	for _, l := range layers {
		if l.Parent != "" {
			if _, ok := byID[l.Parent]; !ok {
				problem("layer %s: its parent %s is not in layers.json", l.ID, l.Parent)
				continue
			}
		}
		for p, n := l.Parent, 0; p != ""; n++ {
			if n > len(layers) {
				problem("layer %s: its parent chain loops", l.ID)
				break
			}
			p = byID[p].Parent
		}
		// Readers trust the ID to be the chain ID: a wrong one pairs images with the wrong content.
		if l.UncompressedDigest.Validate() == nil && l.UncompressedDigest.Algorithm() == digest.Canonical {
			if want := ChainID(l.Parent, l.UncompressedDigest); l.ID != want {
				problem("layer %s: its ID is not the chain ID %s of its diff ID %s on parent %q", l.ID, want, l.UncompressedDigest, l.Parent)
			}
		}
	}

	owner := map[string]string{}
	seenImage := map[string]bool{}
	for _, img := range images {
		if seenImage[img.ID] {
			problem("images.json records image %s twice", img.ID)
		}
		seenImage[img.ID] = true
		for _, n := range img.Names {
			if other, dup := owner[n]; dup {
				// The storage library refuses a read-only store with a duplicate name entirely.
				problem("name %q is held by images %s and %s: Podman refuses the whole store (cargohold rm the name, then publish it again)", n, other, img.ID)
			}
			owner[n] = img.ID
		}
	}
}

// Repair makes the safe fixes under the writer lock and returns what it did, besides the leftovers
// Open already removed (Cleaned): it gives missing permissions (a+rx on dirs, a+r on files, outside
// the layers' diff dirs, whose modes are the image's), recreates missing overlay/l/ links of
// recorded layers from their link files, and rebuilds the file index (fileindex.go) of every layer
// whose index is missing or says something else than its tar-split and files. Everything else Check
// reports needs a person (or a publish into a new store): Repair never touches layer contents or the
// metadata. It stops when ctx ends (the error is ctx's cause), keeping what it fixed so far.
func (s *Store) Repair(ctx context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("layout: store is closed")
	}
	var done []string
	if err := s.repairModes(ctx, &done); err != nil {
		return done, err
	}
	if err := s.repairLinks(&done); err != nil {
		return done, err
	}
	if err := s.repairFilesIndex(&done); err != nil {
		return done, err
	}
	return done, nil
}

// repairFilesIndex rebuilds the file index of each recorded layer, where the store shares file data or
// has an index already (a store published with dedup off has none, and gets none).
func (s *Store) repairFilesIndex(done *[]string) error {
	if _, err := s.root.Lstat(filesDir); errors.Is(err, fs.ErrNotExist) {
		if sharing, err := s.Sharing(); err != nil || sharing == ShareNone {
			return err
		}
	} else if err != nil {
		return err
	}
	if err := s.mkdir(filesDir); err != nil {
		return err
	}
	for _, l := range s.layers {
		entries, err := s.buildLayerFiles(l.ID)
		if err != nil {
			continue // a missing or broken tar-split: Check reports it
		}
		if data, err := s.root.ReadFile(filesIndexPath(l.ID)); err == nil {
			if have, err := parseFilesIndex(data); err == nil && slices.Equal(have, entries) {
				continue
			}
		}
		if err := s.writeFileAtomic(filesIndexPath(l.ID), encodeFilesIndex(entries)); err != nil {
			return fmt.Errorf("layer %s: writing its file index: %w", l.ID, err)
		}
		*done = append(*done, fmt.Sprintf("%s: rebuilt the file index of layer %s", filesIndexPath(l.ID), l.ID))
	}
	s.dropFileIndex()
	return nil
}

// RepairDir opens the existing store at dir for writing (never creating one; waiting for the writer
// lock as lock says), makes Repair's fixes and closes it. It returns everything it did: the leftovers
// Open removed (Cleaned), then Repair's fixes.
func RepairDir(ctx context.Context, dir string, lock LockOptions) ([]string, error) {
	s, err := OpenWithOptions(ctx, dir, Options{Lock: lock})
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", dir, err)
	}
	var repaired []string
	for _, l := range s.Cleaned() {
		repaired = append(repaired, "removed "+l.String())
	}
	done, err := s.Repair(ctx)
	repaired = append(repaired, done...)
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("repairing store %s: %w", s.Dir(), err)
	}
	return repaired, nil
}

// repairModes gives the store's own files the modes readers need. It looks only at the paths the store
// format defines (ownPaths): never at a layer's files, whose modes are the image's, nor at anything
// else somebody put into the store.
func (s *Store) repairModes(ctx context.Context, done *[]string) error {
	for _, p := range s.paths.ownPaths(s.layers, s.images.list) {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		fi, err := s.root.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue // Check reports what is missing
		} else if err != nil {
			return err
		}
		want := fs.FileMode(0o444)
		switch {
		case fi.IsDir():
			want = 0o555
		case !fi.Mode().IsRegular():
			continue // links carry no mode of their own; anything else is not the store's
		}
		if mode := fi.Mode().Perm(); mode&want != want {
			if err := s.chmod(p, mode|want); err != nil {
				return fmt.Errorf("chmod %s: %w", s.path(p), err)
			}
			*done = append(*done, fmt.Sprintf("%s: mode %o -> %o (readable by other users)", p, mode, mode|want))
		}
	}
	return nil
}

func (s *Store) repairLinks(done *[]string) error {
	if s.paths.linkDir == "" {
		return nil // vfs: no links
	}
	for _, l := range s.layers {
		lpath, ok := s.linkOf(l.ID)
		if !ok {
			continue // nothing to rebuild it from; Check reports it
		}
		target := linkTarget(l.ID)
		if got, err := s.root.Readlink(lpath); err == nil && got == target {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			continue // taken by something else: not a safe fix
		}
		if err := s.root.Symlink(target, lpath); err != nil {
			return fmt.Errorf("layer %s: recreating %s: %w", l.ID, s.path(lpath), err)
		}
		*done = append(*done, fmt.Sprintf("%s -> %s: recreated the link of layer %s", lpath, target, l.ID))
	}
	if len(*done) > 0 {
		return s.syncDir(s.paths.linkDir)
	}
	return nil
}

// String describes a leftover for people.
func (l Leftover) String() string { return l.Path + " (" + l.What + ")" }
