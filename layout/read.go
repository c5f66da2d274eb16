package layout

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/storage"
)

// Snapshot is a read-only view of a store as it was when read: what `ls`, `inspect` and reports
// show. Reading takes no lock and writes nothing, like a Podman reader: a publish replaces
// layers.json before images.json, each by rename, so every image read has its layers.
type Snapshot struct {
	dir    string
	paths  storePaths
	Layers []storage.Layer
	Images []storage.Image

	// layerAt is the index in Layers of each layer ID: ls describes every image, each by walking its
	// layers, and a scan of Layers per layer made that images × layers × layers.
	layerAt map[string]int
}

// Read loads the cargohold store at dir, of either driver. A path that is not a cargohold store is
// refused with an error wrapping ErrNotStore. A store of a newer format is read all the same: Read
// looks only at Podman's images.json and layers.json, which every format version keeps as Podman reads
// them.
func Read(dir string) (*Snapshot, error) {
	dir, err := ResolveDir(dir)
	if err != nil {
		return nil, err
	}
	paths, err := identifiedPaths(dir)
	if err != nil {
		return nil, err
	}
	images, layers, err := readRecords(os.DirFS(dir), paths)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	s := &Snapshot{dir: dir, paths: paths, Images: images, Layers: layers, layerAt: make(map[string]int, len(layers))}
	for i := len(layers) - 1; i >= 0; i-- { // the first of a layer recorded twice, as a scan finds it
		s.layerAt[layers[i].ID] = i
	}
	return s, nil
}

// Dir is the store's path, symlinks resolved (ResolveDir).
func (s *Snapshot) Dir() string { return s.dir }

// identifiedPaths returns the paths of the cargohold store at dir, or an error wrapping ErrNotStore.
func identifiedPaths(dir string) (storePaths, error) {
	d, err := Identify(dir)
	if err != nil {
		return storePaths{}, err
	}
	return pathsFor(d), nil
}

// invalidRecordsError is readRecords' error for an images.json or layers.json that does not parse.
type invalidRecordsError struct {
	File string // relative to the store
	Err  error
}

func (e *invalidRecordsError) Error() string {
	return fmt.Sprintf("%s is not valid JSON (Podman shows no images): %v; restore it from a backup or publish into a new store", e.File, e.Err)
}

func (e *invalidRecordsError) Unwrap() error { return e.Err }

// readRecords reads a store's images.json, then its layers.json, as Podman does: a running publish
// replaces layers.json before images.json, so every image read this way has its layers recorded.
// It is the one reader of both files (Read, Check, and opening a store for writing).
func readRecords(fsys fs.FS, p storePaths) (images []storage.Image, layers []storage.Layer, err error) {
	for _, f := range []struct {
		name string
		v    any
	}{{p.imagesJSON, &images}, {p.layersJSON, &layers}} {
		data, err := fs.ReadFile(fsys, f.name)
		if err != nil {
			return nil, nil, err
		}
		if err := json.Unmarshal(data, f.v); err != nil {
			return nil, nil, &invalidRecordsError{File: f.name, Err: err}
		}
	}
	return images, layers, nil
}

// Metadata is what cargohold records about an image besides Podman's fields, inside the image
// record's metadata JSON (Podman reads only its own keys from it).
type Metadata struct {
	Source    string    `json:"source,omitempty"`    // the reference it was published from, e.g. docker://reg/x:1
	Published time.Time `json:"published,omitempty"` // when it was first published into this store

	// Superseded is when the image lost its last name (a moved tag, rm, --prune); nil while it has
	// names. It is kept under digested names until gc's grace period has passed (supersede.go).
	Superseded *time.Time `json:"superseded,omitempty"`
}

// metadataKey is the key of Metadata inside the image record's metadata JSON.
const metadataKey = "cargohold"

// imageMetadataJSON returns the metadata JSON to store with a new image: Podman's signature sizes for
// its manifest (none) plus cargohold's own record.
func imageMetadataJSON(manifestDigest digest.Digest, m Metadata) (string, error) {
	b, err := json.Marshal(map[string]any{
		"signatures-sizes": map[digest.Digest][]int{manifestDigest: {}},
		metadataKey:        m,
	})
	return string(b), err
}

// ImageInfo describes one image for people and reports.
type ImageInfo struct {
	ID        string      `json:"id"`
	Names     []string    `json:"names"`
	Digest    string      `json:"digest"`
	Platform  string      `json:"platform"`
	Created   time.Time   `json:"created"`
	Size      int64       `json:"size"` // bytes of all its layers' content, uncompressed
	Source    string      `json:"source,omitempty"`
	Published *time.Time  `json:"published,omitempty"`
	Layers    []LayerInfo `json:"layers"`

	// Superseded is when the image lost its last name; it is kept under its digested names
	// ("repo@sha256:…") for containers still running from it until gc's grace period has passed.
	Superseded *time.Time `json:"superseded,omitempty"`
}

// LayerInfo describes one layer of an image, base first.
type LayerInfo struct {
	ID               string `json:"id"`
	DiffID           string `json:"diff-id"`
	CompressedDigest string `json:"compressed-digest,omitempty"`
	CompressedSize   int64  `json:"compressed-size,omitempty"`
	Size             int64  `json:"size"`
	// Dir is the directory holding the layer's files (overlay/<id>/diff, vfs/dir/<id>), below the
	// store's path as given: for tests and people who look at the on-disk format itself.
	Dir string `json:"dir"`
}

// Info describes img from its record, its layers and its config.
func (s *Snapshot) Info(img storage.Image) (ImageInfo, error) {
	info := ImageInfo{ID: img.ID, Names: img.Names, Digest: img.Digest.String(), Created: img.Created}
	if info.Names == nil {
		info.Names = []string{}
	}
	m := metadataOf(img)
	info.Source, info.Superseded = m.Source, m.Superseded
	if !m.Published.IsZero() {
		info.Published = &m.Published
	}
	for id := img.TopLayer; id != ""; {
		i, ok := s.layerAt[id]
		if !ok {
			return info, fmt.Errorf("image %s: layer %s is missing from layers.json", img.ID, id)
		}
		if len(info.Layers) >= len(s.Layers) { // a damaged layers.json may make parents loop
			return info, fmt.Errorf("image %s: the parent chain of its layers loops at layer %s", img.ID, id)
		}
		l := s.Layers[i]
		info.Layers = append(info.Layers, LayerInfo{ID: l.ID, DiffID: l.UncompressedDigest.String(),
			CompressedDigest: l.CompressedDigest.String(), CompressedSize: l.CompressedSize, Size: l.UncompressedSize,
			Dir: filepath.Join(s.dir, filepath.FromSlash(s.paths.layerDir(l.ID)), s.paths.diffInLayer())})
		info.Size += l.UncompressedSize
		id = l.Parent
	}
	slices.Reverse(info.Layers)

	platform, err := s.platform(img)
	if err != nil {
		return info, fmt.Errorf("image %s: %w", img.ID, err)
	}
	info.Platform = strings.Join(slices.DeleteFunc(platform, func(s string) bool { return s == "" }), "/")
	return info, nil
}

// platform is img's OS, architecture and variant, from its config, or for a Docker schema 1 image
// (which has none) from its manifest.
func (s *Snapshot) platform(img storage.Image) ([]string, error) {
	if !slices.Contains(img.BigDataNames, configKey(img.ID)) {
		data, err := os.ReadFile(filepath.Join(s.dir, filepath.FromSlash(s.paths.bigDataPath(img.ID, storage.ImageDigestBigDataKey))))
		if err != nil {
			return nil, fmt.Errorf("reading its manifest: %w", err)
		}
		m, err := manifest.Schema1FromManifest(data)
		if err != nil {
			return nil, fmt.Errorf("it has no config and its manifest is not a Docker schema 1 manifest: %w", err)
		}
		inspect, err := m.Inspect(nil)
		if err != nil {
			return nil, fmt.Errorf("reading its schema 1 history: %w", err)
		}
		return []string{inspect.Os, inspect.Architecture, inspect.Variant}, nil
	}
	config, err := os.ReadFile(filepath.Join(s.dir, filepath.FromSlash(s.paths.bigDataPath(img.ID, configKey(img.ID)))))
	if err != nil {
		return nil, fmt.Errorf("reading its config: %w", err)
	}
	var c v1.Image
	if err := json.Unmarshal(config, &c); err != nil {
		return nil, fmt.Errorf("parsing its config: %w", err)
	}
	return []string{c.OS, c.Architecture, c.Variant}, nil
}

// Find returns the image that a user's word names: a full or short ID, an exact name, or a name
// without its registry ("cargotest/app:1", "app:1", "app" for app:latest), as Podman matches local images.
func (s *Snapshot) Find(word string) (storage.Image, error) {
	img, _, err := findImage(s.Images, word)
	return img, err
}

// findImage is Find over a list of records; byID says the word was the image's ID (or a prefix of it)
// rather than one of its names.
func findImage(images []storage.Image, word string) (img storage.Image, byID bool, err error) {
	// An exact ID or name wins over partial matches, so a full name always names one image.
	for _, img := range images {
		if img.ID == word || slices.Contains(img.Names, word) {
			return img, img.ID == word, nil
		}
	}
	var found []storage.Image
	for _, img := range images {
		if img.ID == word || (len(word) >= 4 && strings.HasPrefix(img.ID, word)) || slices.ContainsFunc(img.Names, func(n string) bool {
			return nameMatches(n, word)
		}) {
			found = append(found, img)
		}
	}
	switch len(found) {
	case 0:
		return storage.Image{}, false, fmt.Errorf("no image %q in the store (see cargohold ls)", word)
	case 1:
		return found[0], strings.HasPrefix(found[0].ID, word), nil
	}
	return storage.Image{}, false, fmt.Errorf("%q names %d images; give the full name or ID", word, len(found))
}

// nameMatches says whether a user's word names the image name n.
func nameMatches(n, word string) bool {
	return n == word || strings.HasSuffix(n, "/"+word) || strings.HasSuffix(n, "/"+word+":latest")
}
