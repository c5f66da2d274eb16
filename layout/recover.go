package layout

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/cargohold/cargohold/internal/faultpoint"
	"go.podman.io/storage"
)

// Crash recovery. A publish makes things visible in a fixed order: a layer is unpacked in a staging
// dir, renamed into overlay/ (vfs/dir/), its tar-split and overlay/l/ link put beside it, and only then recorded
// in layers.json; an image's big data is written before images.json names it. So whatever a killed
// run (publish, rm, gc) leaves behind is one of the Leftovers below, which no reader looks at: Podman
// finds layers and images only through layers.json and images.json. Open removes them, holding the
// writer lock; Check reports them.

// A Leftover is a path (relative to the store) that a run which did not finish left behind.
type Leftover struct {
	Path string `json:"path"`
	What string `json:"what"`
}

const (
	leftoverStaging   = "staging dir"
	leftoverTemp      = "temp file"
	leftoverLayerDir  = "layer dir not in layers.json"
	leftoverTarSplit  = "tar-split of a layer not in layers.json"
	leftoverLink      = "l/ link not leading to a recorded layer"
	leftoverImageData = "big-data dir of an image not in images.json"
)

// idRE is a layer or image ID; only such names are ever taken for leftovers, so that nothing a
// person or another tool put into the store is removed.
var idRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// findLeftovers lists the leftovers in the store fsys, given its metadata.
func findLeftovers(fsys fs.FS, p storePaths, layers []storage.Layer, images []storage.Image) ([]Leftover, error) {
	recordedLayer := map[string]bool{}
	for _, l := range layers {
		recordedLayer[l.ID] = true
	}
	recordedImage := map[string]bool{}
	for _, img := range images {
		recordedImage[img.ID] = true
	}
	var found []Leftover
	add := func(p, what string) { found = append(found, Leftover{Path: p, What: what}) }

	entries, err := readDirIfExists(fsys, stagingDir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		add(path.Join(stagingDir, e.Name()), leftoverStaging)
	}

	tempDirs := []string{p.layersDir, p.imagesDir, privateDir}
	entries, err = readDirIfExists(fsys, p.imagesDir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		switch {
		case !e.IsDir() || !idRE.MatchString(e.Name()):
		case recordedImage[e.Name()]:
			tempDirs = append(tempDirs, path.Join(p.imagesDir, e.Name()))
		default:
			add(path.Join(p.imagesDir, e.Name()), leftoverImageData)
		}
	}
	for _, dir := range tempDirs {
		entries, err := readDirIfExists(fsys, dir)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if !e.IsDir() && strings.HasPrefix(e.Name(), tempPrefix) {
				add(path.Join(dir, e.Name()), leftoverTemp)
			}
		}
	}

	entries, err = readDirIfExists(fsys, p.layerRoot)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if idRE.MatchString(e.Name()) && !recordedLayer[e.Name()] {
			add(path.Join(p.layerRoot, e.Name()), leftoverLayerDir)
		}
	}
	entries, err = readDirIfExists(fsys, p.layersDir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if id, ok := strings.CutSuffix(e.Name(), tarSplitSuffix); ok && idRE.MatchString(id) && !recordedLayer[id] {
			add(path.Join(p.layersDir, e.Name()), leftoverTarSplit)
		}
	}
	if p.linkDir == "" {
		return sortLeftovers(found), nil
	}
	entries, err = readDirIfExists(fsys, p.linkDir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if !linkRE.MatchString(e.Name()) {
			continue
		}
		target, err := fs.ReadLink(fsys, path.Join(p.linkDir, e.Name()))
		id, ok := strings.CutPrefix(target, "../")
		id, ok2 := strings.CutSuffix(id, "/"+diffName)
		if err != nil || !ok || !ok2 || !recordedLayer[id] {
			add(path.Join(p.linkDir, e.Name()), leftoverLink)
		}
	}
	return sortLeftovers(found), nil
}

func sortLeftovers(found []Leftover) []Leftover {
	slices.SortFunc(found, func(a, b Leftover) int { return strings.Compare(a.Path, b.Path) })
	return found
}

func readDirIfExists(fsys fs.FS, dir string) ([]fs.DirEntry, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return entries, err
}

// removeLeftovers removes what findLeftovers finds and records it for Cleaned. The caller holds the
// writer lock and s.mu (or is Open), and has loaded the metadata.
func (s *Store) removeLeftovers() error {
	found, err := findLeftovers(s.root.FS(), s.paths, s.layers, s.images)
	if err != nil {
		return err
	}
	for _, l := range found {
		var err error
		if l.What == leftoverStaging || l.What == leftoverTemp || l.What == leftoverLink || l.What == leftoverTarSplit {
			err = s.root.RemoveAll(l.Path)
		} else {
			err = s.removeTree(l.Path) // out of sight in one step, then removed
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing %s (%s): %w", s.path(l.Path), l.What, err)
		}
		s.cleaned = append(s.cleaned, l)
		faultpoint.Hit("leftovers-removing")
	}
	return nil
}

// Cleaned returns what Open (or Repair) removed that an earlier run had left behind.
func (s *Store) Cleaned() []Leftover {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.cleaned)
}
