package layout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"time"

	"go.podman.io/storage"
	"golang.org/x/sys/unix"
)

// Removal is in two phases because nodes may run containers from an image that is removed: their
// Podman looks the image up by ID (inspect, commit, restart) and mounts its layers. Remove takes the
// names away at once (Podman stops listing them under those names), and an image left without names
// is superseded: its record stays under its digested names (supersede.go) until GC finds it older
// than a grace period, and its layers stay as long as any image record uses them. A layer that no
// image uses waits for the grace period too; when it became unused is recorded in the store
// (releasedJSON), so the grace spans runs.

const releasedJSON = privateDir + "/released.json" // layer ID → when it was found unused

// Removal reports what Remove did (or, in a dry run, would do) for one word.
type Removal struct {
	ImageID      string   `json:"id"`
	Names        []string `json:"names"`         // names taken away
	ImageRemoved bool     `json:"image_removed"` // the image record went too (RemoveOptions.Now)
	// Superseded says the image has no name left and is kept under the names KeptAs (its digested
	// names) until gc's grace period has passed.
	Superseded bool     `json:"superseded"`
	KeptAs     []string `json:"kept_as,omitempty"`
}

// RemoveOptions say how Remove removes.
type RemoveOptions struct {
	DryRun bool // say what would be done, write nothing
	// Now removes an image left without names (or named by ID) at once, with its big data, instead of
	// superseding it: containers running from it on nodes can no longer be inspected or committed.
	Now bool
}

// Remove takes away what a user's word names (as Find matches it): a name is taken off its image, and
// an image left without names is superseded (with opts.Now: removed); an ID does that to the image
// with all its names. A superseded image's layers stay with it; a removed image's stay until GC. Once
// ctx has ended, nothing is written (its cause is the error).
func (s *Store) Remove(ctx context.Context, word string, opts RemoveOptions) (Removal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ctx.Err() != nil {
		return Removal{}, context.Cause(ctx)
	}
	img, byID, err := findImage(s.images.list, word)
	if err != nil {
		return Removal{}, err
	}
	r := Removal{ImageID: img.ID, Names: slices.Clone(img.Names)}
	if !byID {
		r.Names = slices.DeleteFunc(slices.Clone(img.Names), func(n string) bool { return !nameMatches(n, word) })
	}
	if r.Names == nil {
		r.Names = []string{}
	}
	images, dropped := s.withoutNames(img.ID, r.Names, opts.Now)
	r.ImageRemoved = slices.Contains(dropped, img.ID)
	if i := slices.IndexFunc(images, func(im storage.Image) bool { return im.ID == img.ID }); i >= 0 {
		// Marks as the records have them now, and will then (decoded only if the record changed).
		r.Superseded = s.images.markOf(images[i]).ok
		if r.Superseded {
			r.KeptAs = slices.Clone(images[i].Names)
		}
		if s.images.markOf(img).ok {
			r.Names = []string{} // its digested names are cargohold's: nothing was taken away
		}
	}
	if opts.DryRun {
		return r, nil
	}
	if err := s.writeImagesJSON(images); err != nil {
		return r, err
	}
	// The records are gone, so no reader looks for these files any more.
	return r, s.removeBigData(dropped)
}

// withoutNames is the store's image records with names taken off image id, an image left without
// names superseded (or, with now, dropped), and the IDs of the images dropped.
func (s *Store) withoutNames(id string, names []string, now bool) ([]storage.Image, []string) {
	images := make([]storage.Image, 0, len(s.images.list))
	var dropped []string
	for _, im := range s.images.list {
		im = copyImage(im)
		if im.ID == id {
			im.Names = slices.DeleteFunc(im.Names, func(n string) bool { return slices.Contains(names, n) })
			if now && len(im.Names) == 0 {
				dropped = append(dropped, im.ID)
				continue
			}
		}
		images = append(images, im)
	}
	images, more := settleNameless(s.images.list, images, s.clock())
	return images, append(dropped, more...)
}

// GCReport says what GC did (or would do).
type GCReport struct {
	// RemovedImages are superseded images whose grace period has passed, and images that had no
	// name at all (left so by an earlier version): their records and big data were removed, and
	// their layers that no other image uses went too (or, for a nameless image, start their grace
	// period).
	RemovedImages []string          `json:"removed_images"`
	Deleted       []string          `json:"deleted"` // layers whose files were removed
	Waiting       map[string]string `json:"waiting"` // unused layers still in their grace period → when they may go (RFC 3339)
	// WaitingImages are superseded images still in their grace period → when they may go (RFC 3339).
	WaitingImages map[string]string `json:"waiting_images"`
}

// GC removes superseded images whose grace period has passed and images without names, deletes
// layers that no image uses and that have been unused for at least grace (a superseded image's layers
// count as unused since it was superseded), and starts the grace period of layers found unused for
// the first time, and records grace in the store for readers (Snapshot.Grace). With dryRun nothing is written. It stops when ctx ends (the error is ctx's cause):
// at the start, or between two layers whose files it deletes (layers.json no longer records them, so
// the next writer's Open removes the rest as leftovers).
func (s *Store) GC(ctx context.Context, grace time.Duration, now time.Time, dryRun bool) (GCReport, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	report := GCReport{RemovedImages: []string{}, Deleted: []string{}, Waiting: map[string]string{},
		WaitingImages: map[string]string{}}
	if ctx.Err() != nil {
		return report, context.Cause(ctx)
	}
	released, err := s.readReleased()
	if err != nil {
		return report, err
	}
	images, dropped, lastUsed := expireImages(&s.images, s.layers, grace, now, &report)
	if len(dropped) > 0 && !dryRun {
		if err := s.writeImagesJSON(images); err != nil {
			return report, err
		}
		if err := s.removeBigData(dropped); err != nil {
			return report, err
		}
	}

	used := usedLayers(images, layerParents(s.layers))
	newReleased := map[string]time.Time{}
	var doomed []storage.Layer
	for _, l := range s.layers {
		if used[l.ID] {
			continue
		}
		since, ok := lastUsed[l.ID]
		if !ok {
			if since, ok = released[l.ID]; !ok {
				since = now
			}
		}
		if now.Sub(since) >= grace {
			doomed = append(doomed, l)
			report.Deleted = append(report.Deleted, l.ID)
		} else {
			newReleased[l.ID] = since
			report.Waiting[l.ID] = since.Add(grace).UTC().Format(time.RFC3339)
		}
	}
	sort.Strings(report.Deleted)
	if dryRun {
		return report, nil
	}
	if err := s.recordGrace(grace); err != nil { // for readers: when gc may remove what it kept (Snapshot.Grace)
		return report, err
	}

	// layers.json first: once a layer is not recorded, no reader will mount it; its files go after.
	if len(doomed) > 0 {
		layers := slices.DeleteFunc(slices.Clone(s.layers), func(l storage.Layer) bool {
			return slices.ContainsFunc(doomed, func(d storage.Layer) bool { return d.ID == l.ID })
		})
		if err := s.writeLayers(layers); err != nil {
			return report, err
		}
		s.layers = layers
		s.dropFileIndex() // the files of these layers go
	}
	if err := s.writeReleased(newReleased); err != nil {
		return report, err
	}
	for _, l := range doomed {
		if ctx.Err() != nil {
			return report, fmt.Errorf("deleting the files of unrecorded layers (the next publish, gc or check --repair finishes): %w", context.Cause(ctx))
		}
		if err := s.removeLayerFiles(l.ID); err != nil {
			return report, fmt.Errorf("layer %s: %w", l.ID, err)
		}
	}
	return report, nil
}

// expireImages is GC's decision about images: those without names, and superseded ones whose grace
// period has passed at now, are dropped (their IDs in dropped and the report); the others are kept,
// superseded ones reported as waiting. lastUsed says, for each layer of a dropped superseded image,
// when it was last used: when the last such image using it was superseded.
func expireImages(all *imageSet, layers []storage.Layer, grace time.Duration, now time.Time, report *GCReport) (
	kept []storage.Image, dropped []string, lastUsed map[string]time.Time) {
	lastUsed = map[string]time.Time{}
	kept = make([]storage.Image, 0, len(all.list))
	parent := layerParents(layers) // once: an image's chain is walked for each dropped image
	for i, img := range all.list {
		since, superseded := all.marks[i].since, all.marks[i].ok
		switch {
		case len(img.Names) == 0:
			dropped = append(dropped, img.ID)
		case superseded && now.Sub(since) >= grace:
			dropped = append(dropped, img.ID)
			for id := range usedLayers([]storage.Image{img}, parent) {
				if since.After(lastUsed[id]) {
					lastUsed[id] = since
				}
			}
		case superseded:
			report.WaitingImages[img.ID] = since.Add(grace).UTC().Format(time.RFC3339)
			kept = append(kept, img)
		default:
			kept = append(kept, img)
		}
	}
	report.RemovedImages = append(report.RemovedImages, dropped...)
	return kept, dropped, lastUsed
}

// usedLayers is every layer some image stands on: each image's top layer and its ancestors.
// parent is layerParents' answer.
func usedLayers(images []storage.Image, parent map[string]string) map[string]bool {
	used := map[string]bool{}
	for _, img := range images {
		for id := img.TopLayer; id != "" && !used[id]; id = parent[id] {
			used[id] = true
		}
	}
	return used
}

// layerParents maps each layer's ID to its parent's.
func layerParents(layers []storage.Layer) map[string]string {
	parent := make(map[string]string, len(layers))
	for _, l := range layers {
		parent[l.ID] = l.Parent
	}
	return parent
}

// removeLayerFiles removes a layer no longer in layers.json: its file index, its l/ symlink, its
// tar-split and its dir. Only the layer's names go: an inode it shares with another layer (a hard link,
// ShareHardlink) keeps that layer's name, and shared extents (reflinks) stay as long as a file uses them.
func (s *Store) removeLayerFiles(id string) error {
	if err := s.root.Remove(filesIndexPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if lpath, ok := s.linkOf(id); ok {
		if err := s.root.Remove(lpath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := s.root.Remove(path.Join(s.paths.layersDir, id+tarSplitSuffix)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return s.removeTree(s.paths.layerDir(id))
}

// removeTree moves dir into the staging area first, so it disappears from its place in one step even if
// the removal is interrupted (Open removes what is left in staging). An overlay mount without
// redirect_dir, such as a CVMFS transaction, cannot rename a directory of its lower layer (EXDEV):
// there dir is removed where it is, which is atomic all the same when the transaction is published.
func (s *Store) removeTree(dir string) error {
	trash := path.Join(stagingDir, "removed-"+randomName())
	err := s.root.Rename(dir, trash)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case errors.Is(err, unix.EXDEV):
		return s.root.RemoveAll(dir)
	case err != nil:
		return err
	}
	return s.root.RemoveAll(trash)
}

// writeImages replaces images.json with data (images, marshalled) under Podman's images.lock and
// makes images the store's records.
func (s *Store) writeImages(images []storage.Image, data []byte) error {
	if err := recordWrite(s.imagesLock, func() error { return s.writeFileAtomic(s.paths.imagesJSON, data) }); err != nil {
		return err
	}
	s.setImages(images, data)
	return nil
}

// setImages makes images (marshalled: data, nil if not yet) the store's records, indexed. Nothing
// else changes s.images, so its indexes always say what the records say. The caller holds s.mu (or
// is open).
func (s *Store) setImages(images []storage.Image, data []byte) {
	s.images, s.imagesJSON = newImageSet(images, &s.images), data
}

// marshalledImages is json.Marshal(s.images.list), remembered until the records change: putImages
// compares its result with it for every image of a run. The caller holds s.mu.
func (s *Store) marshalledImages() ([]byte, error) {
	if s.imagesJSON == nil {
		data, err := json.Marshal(s.images.list)
		if err != nil {
			return nil, err
		}
		s.imagesJSON = data
	}
	return s.imagesJSON, nil
}

// writeImagesJSON is writeImages for records not yet marshalled.
func (s *Store) writeImagesJSON(images []storage.Image) error {
	data, err := json.Marshal(images)
	if err != nil {
		return err
	}
	return s.writeImages(images, data)
}

func (s *Store) readReleased() (map[string]time.Time, error) {
	released := map[string]time.Time{}
	data, err := s.root.ReadFile(releasedJSON)
	if errors.Is(err, fs.ErrNotExist) {
		return released, nil
	} else if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &released); err != nil {
		return nil, fmt.Errorf("%s is not valid (delete it to restart every grace period): %w", s.path(releasedJSON), err)
	}
	return released, nil
}

func (s *Store) writeReleased(released map[string]time.Time) error {
	data, err := json.MarshalIndent(released, "", "  ")
	if err != nil {
		return err
	}
	return s.writeFileAtomic(releasedJSON, data)
}

// NamesExcept returns the names in the store that are not in keep, sorted: what a recipe no longer
// lists. The digested names of superseded images are not among them: cargohold gave them.
func (s *Store) NamesExcept(keep []string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := make(map[string]bool, len(keep))
	for _, n := range keep {
		kept[n] = true
	}
	names := []string{}
	for i, img := range s.images.list {
		if s.images.marks[i].ok {
			continue
		}
		for _, n := range img.Names {
			if !kept[n] {
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	return names
}
