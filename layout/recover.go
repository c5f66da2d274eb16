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
	What string `json:"what"` // for people: what kind of leftover it is
	kind leftoverKind
}

// leftoverKind is what a leftover is, which says how it is removed.
type leftoverKind int

const (
	leftoverStaging    leftoverKind = iota // a staging dir
	leftoverTemp                           // a temp file of an atomic write
	leftoverLayerDir                       // a layer dir not in layers.json
	leftoverTarSplit                       // a tar-split of a layer not in layers.json
	leftoverLink                           // an l/ link not leading to a recorded layer
	leftoverImageData                      // a big-data dir of an image not in images.json
	leftoverFilesIndex                     // a file index of a layer not in layers.json
)

func (k leftoverKind) String() string {
	return [...]string{
		leftoverStaging:    "staging dir",
		leftoverTemp:       "temp file",
		leftoverLayerDir:   "layer dir not in layers.json",
		leftoverTarSplit:   "tar-split of a layer not in layers.json",
		leftoverLink:       "l/ link not leading to a recorded layer",
		leftoverImageData:  "big-data dir of an image not in images.json",
		leftoverFilesIndex: "file index of a layer not in layers.json",
	}[k]
}

// idRE is a layer or image ID; only such names are ever taken for leftovers, so that nothing a
// person or another tool put into the store is removed.
var idRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// leftoverFinder collects the leftovers of one store.
type leftoverFinder struct {
	fsys          fs.FS
	p             storePaths
	recordedLayer map[string]bool
	recordedImage map[string]bool
	found         []Leftover
}

func (f *leftoverFinder) add(p string, k leftoverKind) {
	f.found = append(f.found, Leftover{Path: p, What: k.String(), kind: k})
}

// findLeftovers lists the leftovers in the store fsys, given its metadata.
func findLeftovers(fsys fs.FS, p storePaths, layers []storage.Layer, images []storage.Image) ([]Leftover, error) {
	f := &leftoverFinder{fsys: fsys, p: p, recordedLayer: map[string]bool{}, recordedImage: map[string]bool{}}
	for _, l := range layers {
		f.recordedLayer[l.ID] = true
	}
	for _, img := range images {
		f.recordedImage[img.ID] = true
	}
	for _, find := range []func() error{f.staging, f.imagesAndTemps, f.layerDirs, f.tarSplits, f.links, f.filesIndexes} {
		if err := find(); err != nil {
			return nil, err
		}
	}
	return sortLeftovers(f.found), nil
}

func (f *leftoverFinder) staging() error {
	entries, err := readDirIfExists(f.fsys, stagingDir)
	for _, e := range entries {
		f.add(path.Join(stagingDir, e.Name()), leftoverStaging)
	}
	return err
}

// imagesAndTemps finds big-data dirs of unrecorded images, and temp files wherever atomic writes go.
func (f *leftoverFinder) imagesAndTemps() error {
	tempDirs := []string{f.p.layersDir, f.p.imagesDir, privateDir, filesDir}
	entries, err := readDirIfExists(f.fsys, f.p.imagesDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		switch {
		case !e.IsDir() || !idRE.MatchString(e.Name()):
		case f.recordedImage[e.Name()]:
			tempDirs = append(tempDirs, path.Join(f.p.imagesDir, e.Name()))
		default:
			f.add(path.Join(f.p.imagesDir, e.Name()), leftoverImageData)
		}
	}
	for _, dir := range tempDirs {
		entries, err := readDirIfExists(f.fsys, dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if !e.IsDir() && strings.HasPrefix(e.Name(), tempPrefix) {
				f.add(path.Join(dir, e.Name()), leftoverTemp)
			}
		}
	}
	return nil
}

func (f *leftoverFinder) layerDirs() error {
	entries, err := readDirIfExists(f.fsys, f.p.layerRoot)
	for _, e := range entries {
		if idRE.MatchString(e.Name()) && !f.recordedLayer[e.Name()] {
			f.add(path.Join(f.p.layerRoot, e.Name()), leftoverLayerDir)
		}
	}
	return err
}

func (f *leftoverFinder) tarSplits() error {
	entries, err := readDirIfExists(f.fsys, f.p.layersDir)
	for _, e := range entries {
		if id, ok := strings.CutSuffix(e.Name(), tarSplitSuffix); ok && idRE.MatchString(id) && !f.recordedLayer[id] {
			f.add(path.Join(f.p.layersDir, e.Name()), leftoverTarSplit)
		}
	}
	return err
}

func (f *leftoverFinder) filesIndexes() error {
	entries, err := readDirIfExists(f.fsys, filesDir)
	for _, e := range entries {
		if id, ok := strings.CutSuffix(e.Name(), filesSuffix); ok && idRE.MatchString(id) && !f.recordedLayer[id] {
			f.add(path.Join(filesDir, e.Name()), leftoverFilesIndex)
		}
	}
	return err
}

func (f *leftoverFinder) links() error {
	if f.p.linkDir == "" {
		return nil // vfs: no links
	}
	entries, err := readDirIfExists(f.fsys, f.p.linkDir)
	for _, e := range entries {
		if !linkRE.MatchString(e.Name()) {
			continue
		}
		target, err := fs.ReadLink(f.fsys, path.Join(f.p.linkDir, e.Name()))
		id, ok := strings.CutPrefix(target, "../")
		id, ok2 := strings.CutSuffix(id, "/"+diffName)
		if err != nil || !ok || !ok2 || !f.recordedLayer[id] {
			f.add(path.Join(f.p.linkDir, e.Name()), leftoverLink)
		}
	}
	return err
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
		if l.kind == leftoverLayerDir || l.kind == leftoverImageData {
			err = s.removeTree(l.Path) // out of sight in one step, then removed
		} else {
			err = s.root.RemoveAll(l.Path)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing %s (%s): %w", s.path(l.Path), l.What, err)
		}
		s.cleaned = append(s.cleaned, l)
		faultpoint.Hit("leftovers-removing")
	}
	return nil
}

// Cleaned returns what OpenWithOptions (or Repair) removed that an earlier run had left behind.
func (s *Store) Cleaned() []Leftover {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.cleaned)
}
