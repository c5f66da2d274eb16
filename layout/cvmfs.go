package layout

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
)

// Options say how a store is written for the filesystem it lives on. The zero value is a plain store.
type Options struct {
	// CatalogMarkers puts an empty .cvmfscatalog file into every layer dir (overlay/<id>/, beside
	// diff/, so containers never see it; in a vfs store the layer dir is the container's root, where
	// containers see an empty /.cvmfscatalog, as in CVMFS's own unpacked images). CVMFS then gives each
	// layer a nested catalog of its own: catalogs stay small, and a client loads only the catalogs of
	// the layers it runs.
	CatalogMarkers bool

	// Driver is the format of a new store ("": overlay). An existing store keeps its own; asking
	// for another is an ErrWrongDriver.
	Driver Driver

	// Create lets OpenWithOptions create a new store where nothing is yet: a path that does not exist
	// (with its parents) or an empty directory. Only publish sets it. It also checks first that the
	// process has the privileges a publish needs (ErrNotPrivileged). Without it, a path that is not a
	// cargohold store already is refused (ErrNotStore) and nothing is created.
	Create bool

	Lock LockOptions // what OpenWithOptions does while another run holds the writer lock (lock.go)

	// ServedAt is the path readers know the store by when it is written elsewhere (a shadow, see
	// Shadow): Dir returns it, so that what depends on the readers' path (the depth of image that
	// Podman 4.x mounts, storage.conf) uses the store's real place. "": the store's own path.
	ServedAt string

	// Dedup says whether the layers published share the data of equal files ("": DedupAuto, reflinks
	// where the filesystem has them; see dedup.go).
	Dedup Dedup
}

const catalogMarkerName = ".cvmfscatalog"

// OpenWithOptions opens the cargohold store at dir for writing with opts (see open), holding its
// writer lock until Close. A path that is not a cargohold store is refused with an error wrapping
// ErrNotStore before anything is written, unless opts.Create and nothing is there yet; a store of a
// newer format with ErrNewerFormat. With CatalogMarkers, layers committed before the option was
// turned on get their marker now (once: an existing marker is left as it is). While another run holds
// the writer lock, it waits until that run ends or ctx does (then the error is ctx's cause).
func OpenWithOptions(ctx context.Context, dir string, opts Options) (*Store, error) {
	s, err := open(ctx, dir, opts)
	if err != nil {
		return nil, err
	}
	if opts.CatalogMarkers {
		if err := s.addCatalogMarkers(); err != nil {
			_ = s.Close() // the marker's error is the one to report
			return nil, err
		}
	}
	return s, nil
}

// addCatalogMarkers creates the marker in every recorded layer dir that lacks it.
func (s *Store) addCatalogMarkers() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.layers {
		marker := path.Join(s.paths.layerDir(l.ID), catalogMarkerName)
		if _, err := s.root.Lstat(marker); err == nil {
			continue // never rewritten: CVMFS would publish an unchanged catalog again
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := s.writeFile(marker, nil); err != nil {
			return fmt.Errorf("adding the CVMFS catalog marker of layer %s: %w", l.ID, err)
		}
	}
	return nil
}

// stageCatalogMarker writes the marker into a staged layer dir, so it is in place before the dir
// is renamed into place. In a vfs layer it comes after the parent's tree is copied (which may hold
// the parent's marker already).
func (l *StagedLayer) stageCatalogMarker() error {
	if !l.s.opts.CatalogMarkers {
		return nil
	}
	err := l.s.writeFile(path.Join(l.layerDir(), catalogMarkerName), nil)
	if errors.Is(err, fs.ErrExist) {
		return nil // copied with the parent's tree (vfs)
	}
	return err
}
