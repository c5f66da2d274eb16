package layout

import (
	"errors"
	"fmt"
	"io/fs"
	"path"

	"go.podman.io/storage"

	"github.com/cargohold/cargohold/layout/driver"
)

// Driver is the containers-storage graph driver whose on-disk format a store has (overlay or vfs).
// It is defined in layout/driver, the light part of layout that storageconf uses too; layout
// re-exports it, and says here what each driver means on disk (pathsFor).
type Driver = driver.Driver

const (
	Overlay = driver.Overlay
	VFS     = driver.VFS
)

// ParseDriver checks a driver name as given on the command line or in a recipe ("" is overlay).
func ParseDriver(name string) (Driver, error) { return driver.Parse(name) }

// ErrWrongDriver is returned by OpenWithOptions for a store of another driver than the one asked for
// (driver.ErrWrongDriver: storageconf refuses such a registration with it too).
var ErrWrongDriver = driver.ErrWrongDriver

func wrongDriver(dir string, have, want Driver) error {
	return fmt.Errorf("%w: %s is a %s store, not %s: publish with --driver %s, or use another directory for a %s store",
		ErrWrongDriver, dir, have, want, have, want)
}

// DetectDriver returns the driver of the store fsys by the records it holds; "" for a store
// without records (new or empty).
func DetectDriver(fsys fs.FS) (Driver, error) {
	var found []Driver
	for _, d := range []Driver{Overlay, VFS} {
		if _, err := fs.Stat(fsys, pathsFor(d).layersJSON); err == nil {
			found = append(found, d)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
	}
	switch len(found) {
	case 0:
		return "", nil
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("the store holds both %s and %s records: keep one driver per store directory", found[0], found[1])
}

// storePaths are the driver-specific paths inside a store, relative to its root.
type storePaths struct {
	driver     Driver
	driverDir  string // overlay, vfs
	layerRoot  string // overlay, vfs/dir: holds one dir per layer ID
	linkDir    string // overlay/l; "" for vfs (no short links)
	layersDir  string // <driver>-layers: layers.json, layers.lock, <layer ID>.tar-split.gz
	imagesDir  string // <driver>-images: images.json, images.lock, <image ID>/<big data>
	layersJSON string
	imagesJSON string
}

func pathsFor(d Driver) storePaths {
	p := storePaths{
		driver:    d,
		driverDir: string(d),
		layersDir: string(d) + "-layers",
		imagesDir: string(d) + "-images",
	}
	p.layersJSON = p.layersDir + "/layers.json"
	p.imagesJSON = p.imagesDir + "/images.json"
	if d == VFS {
		p.layerRoot = "vfs/dir"
	} else {
		p.layerRoot = "overlay"
		p.linkDir = "overlay/l"
	}
	return p
}

// OverlayLowerLen is how long the lowerdir list of a reader's overlay mount gets for an image of n
// layers from the overlay store at dir (its absolute path, as readers name it): Podman names each
// layer of an additional store by its short link, "<dir>/overlay/l/<26 characters>", and joins them
// with ":". What that means for how deep an image may be is builder's (depth.go): readers' limits.
func OverlayLowerLen(dir string, n int) int {
	if n <= 0 {
		return 0
	}
	link := len(dir + "/" + pathsFor(Overlay).linkDir + "/")
	return n*(link+linkLength) + (n - 1)
}

// layerDir is a layer's dir: overlay/<id> (diff/, link, lower, ...) or vfs/dir/<id> (the tree itself).
func (p storePaths) layerDir(id string) string { return path.Join(p.layerRoot, id) }

// diffInLayer is where a layer's files are, relative to its layer dir.
func (p storePaths) diffInLayer() string {
	if p.driver == VFS {
		return "."
	}
	return diffName
}

// skeleton lists the dirs every store of the driver has.
func (p storePaths) skeleton() []string {
	dirs := []string{p.driverDir, p.layerRoot, p.layersDir, p.imagesDir}
	if p.linkDir != "" {
		dirs = append(dirs, p.linkDir)
	}
	return dirs
}

// ownPaths lists the paths (relative to the store) whose modes are the store's to set, for the store
// holding layers and images: the root and skeleton dirs, the metadata and lock files, recorded
// layers' tar-splits and (overlay) their layer dirs with link, lower, lower-layers, empty/ and the
// CVMFS catalog marker, and recorded images' big-data dirs and files. A layer's files are not among
// them (overlay's diff/ and everything under it, a vfs layer dir): their modes are the image's.
func (p storePaths) ownPaths(layers []storage.Layer, images []storage.Image) []string {
	own := append([]string{"."}, p.skeleton()...)
	own = append(own, p.layersJSON, path.Join(p.layersDir, layersLock), p.imagesJSON, path.Join(p.imagesDir, imagesLock))
	for _, l := range layers {
		own = append(own, path.Join(p.layersDir, l.ID+tarSplitSuffix))
		if p.driver == VFS {
			continue
		}
		dir := p.layerDir(l.ID)
		own = append(own, dir)
		for _, name := range []string{linkName, lowerName, lowerLayersName, emptyName, catalogMarkerName} {
			own = append(own, path.Join(dir, name))
		}
	}
	for _, img := range images {
		own = append(own, path.Join(p.imagesDir, img.ID))
		for _, key := range img.BigDataNames {
			own = append(own, p.bigDataPath(img.ID, key))
		}
	}
	return own
}
