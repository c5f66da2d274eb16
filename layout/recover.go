package layout

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
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

// linksCheckedName records the links fingerprint (see leftoverFinder) of overlay/l/ as the last Open
// left it: every link there then led to a recorded layer.
const linksCheckedName = privateDir + "/links-checked"

// leftoverFinder collects the leftovers of one store.
//
// Reading every overlay/l/ link is most of a no-op run's open, so Open skips it when overlay/l/ holds
// the same names, and layers.json the same layers, as when the links were last all found good: the
// links fingerprint (names of l/ and recorded layer IDs) equals the one recorded then. A link is only
// ever made under a fresh random name, and any crash leftover changes the names or the layers (a
// link made and not recorded adds a name; a layer dropped from layers.json but not yet unlinked
// removes an ID), so the skip never misses one. Check always reads every link.
type leftoverFinder struct {
	fsys          fs.FS
	p             storePaths
	recordedLayer map[string]bool
	recordedImage map[string]bool
	found         []Leftover

	checkedLinks string // the fingerprint last recorded in linksCheckedName; "" reads every link
	linksLeft    string // the fingerprint of l/ once the leftover links found are removed
}

func newLeftoverFinder(fsys fs.FS, p storePaths, layers []storage.Layer, images []storage.Image) *leftoverFinder {
	f := &leftoverFinder{fsys: fsys, p: p, recordedLayer: map[string]bool{}, recordedImage: map[string]bool{}}
	for _, l := range layers {
		f.recordedLayer[l.ID] = true
	}
	for _, img := range images {
		f.recordedImage[img.ID] = true
	}
	return f
}

func (f *leftoverFinder) add(p string, k leftoverKind) {
	f.found = append(f.found, Leftover{Path: p, What: k.String(), kind: k})
}

// findLeftovers lists the leftovers in the store fsys, given its metadata.
func findLeftovers(fsys fs.FS, p storePaths, layers []storage.Layer, images []storage.Image) ([]Leftover, error) {
	return newLeftoverFinder(fsys, p, layers, images).find()
}

func (f *leftoverFinder) find() ([]Leftover, error) {
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
	if err != nil {
		return err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if f.checkedLinks != "" && f.fingerprint(names) == f.checkedLinks {
		f.linksLeft = f.checkedLinks
		return nil
	}
	good := names[:0:0]
	for _, name := range names {
		if !linkRE.MatchString(name) {
			good = append(good, name) // not a link cargohold makes: never a leftover
			continue
		}
		target, err := fs.ReadLink(f.fsys, path.Join(f.p.linkDir, name))
		id, ok := strings.CutPrefix(target, "../")
		id, ok2 := strings.CutSuffix(id, "/"+diffName)
		if err != nil || !ok || !ok2 || !f.recordedLayer[id] {
			f.add(path.Join(f.p.linkDir, name), leftoverLink)
		} else {
			good = append(good, name)
		}
	}
	f.linksLeft = f.fingerprint(good)
	return nil
}

// fingerprint is the links fingerprint of an overlay/l/ holding names (as listed: sorted).
func (f *leftoverFinder) fingerprint(names []string) string {
	h := sha256.New()
	for _, id := range slices.Sorted(maps.Keys(f.recordedLayer)) {
		_, _ = io.WriteString(h, "layer "+id+"\n") // a hash never fails to write
	}
	for _, name := range names {
		_, _ = io.WriteString(h, "link "+name+"\n")
	}
	return hex.EncodeToString(h.Sum(nil))
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
	f := newLeftoverFinder(s.root.FS(), s.paths, s.layers, s.images.list)
	if data, err := s.root.ReadFile(linksCheckedName); err == nil {
		f.checkedLinks = strings.TrimSpace(string(data))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	found, err := f.find()
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
	return s.recordLinksChecked(f)
}

// recordLinksChecked records the links fingerprint of overlay/l/ as the leftover removal left it. It
// needs no fsync: a record lost in a crash only makes the next Open read every link again, and one
// that outlives an unlink lost in a crash does not match the names that link keeps in l/.
func (s *Store) recordLinksChecked(f *leftoverFinder) error {
	if f.linksLeft == "" || f.linksLeft == f.checkedLinks {
		return nil
	}
	if err := s.replaceFile(linksCheckedName, []byte(f.linksLeft+"\n"), false); err != nil {
		return fmt.Errorf("recording the checked links: %w", err)
	}
	return nil
}

// Cleaned returns what OpenWithOptions (or Repair) removed that an earlier run had left behind.
func (s *Store) Cleaned() []Leftover {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.cleaned)
}
