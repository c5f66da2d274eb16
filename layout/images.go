package layout

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"time"

	"github.com/cargohold/cargohold/internal/faultpoint"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/storage"
	"go.podman.io/storage/pkg/stringid"
)

// ImageMeta is what PutImage records about an image.
type ImageMeta struct {
	ID       string        // config digest hex
	Digest   digest.Digest // manifest digest
	TopLayer string
	Names    []string  // full names like "docker.io/library/alpine:3.20"
	Created  time.Time // from the image config
	Metadata string    // JSON string stored as-is
	BigData  []BigData // config under "sha256:<hex>", manifest under "manifest-<digest>" and "manifest"
}

func (m *ImageMeta) validate() error {
	if err := stringid.ValidateID(m.ID); err != nil {
		return fmt.Errorf("image ID %q: %w", m.ID, err)
	}
	if m.Digest != "" {
		if err := m.Digest.Validate(); err != nil {
			return fmt.Errorf("manifest digest %q: %w", m.Digest, err)
		}
	}
	if m.TopLayer != "" {
		if err := stringid.ValidateID(m.TopLayer); err != nil {
			return fmt.Errorf("top layer ID %q: %w", m.TopLayer, err)
		}
	}
	for _, n := range m.Names {
		if n == "" {
			return errors.New("empty image name")
		}
	}
	seen := map[string]bool{}
	for _, b := range m.BigData {
		if b.Key == "" {
			return errors.New("big data item with an empty key")
		}
		if seen[b.Key] {
			return fmt.Errorf("big data key %q given twice", b.Key)
		}
		seen[b.Key] = true
	}
	return nil
}

// PutImage adds the image, or updates the image with the same ID, as the image library's commit does
// through the storage library: new names go first and into names-history, big data items are written
// and recorded with size and digest, metadata replaced when given. Each of the image's names is taken
// away from any other image, because one duplicate name makes the whole read-only store unreadable.
// Big-data files are written first, images.json last (atomically), then images.lock records a write.
//
// It returns changed=false and writes nothing when the store already holds exactly this, so that
// publishing twice is a no-op. The top layer must already be committed.
func (s *Store) PutImage(img ImageMeta) (changed bool, err error) {
	if err := img.validate(); err != nil {
		return false, fmt.Errorf("image %s: %w", img.ID, err)
	}
	digests := make([]digest.Digest, len(img.BigData))
	for i, b := range img.BigData {
		if digests[i], err = bigDataDigest(b.Key, b.Data); err != nil {
			return false, fmt.Errorf("image %s: %w", img.ID, err)
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, errors.New("layout: store is closed")
	}
	if img.TopLayer != "" && s.layerIndex(img.TopLayer) < 0 {
		return false, fmt.Errorf("image %s: top layer %s is not committed", img.ID, img.TopLayer)
	}

	images := make([]storage.Image, len(s.images))
	for i, im := range s.images {
		images[i] = copyImage(im)
	}
	idx := s.imageIndex(img.ID)
	if idx < 0 {
		created := img.Created
		if created.IsZero() {
			created = time.Now().UTC() // as the storage library does without a creation date
		}
		images = append(images, storage.Image{
			ID:       img.ID,
			Digest:   img.Digest,
			TopLayer: img.TopLayer,
			Metadata: img.Metadata,
			Created:  created,
		})
		idx = len(images) - 1
	}
	rec := &images[idx]
	if rec.TopLayer != img.TopLayer {
		return false, fmt.Errorf("image %s already exists with top layer %s, not %s", img.ID, rec.TopLayer, img.TopLayer)
	}
	if rec.Digest == "" {
		rec.Digest = img.Digest
	}
	if img.Metadata != "" {
		rec.Metadata = img.Metadata
	}
	for i, b := range img.BigData {
		if !slices.Contains(rec.BigDataNames, b.Key) {
			rec.BigDataNames = append(rec.BigDataNames, b.Key)
		}
		if rec.BigDataSizes == nil {
			rec.BigDataSizes = map[string]int64{}
		}
		rec.BigDataSizes[b.Key] = int64(len(b.Data))
		if rec.BigDataDigests == nil {
			rec.BigDataDigests = map[string]digest.Digest{}
		}
		rec.BigDataDigests[b.Key] = digests[i]
	}

	// Names as the storage library's AddNames sets them: the new ones first, then the old ones, each
	// pushed to the front of names-history in that order.
	rec.Names = dedupe(slices.Concat(img.Names, rec.Names))
	for _, n := range rec.Names {
		rec.NamesHistory = dedupe(slices.Concat([]string{n}, rec.NamesHistory))
	}
	for i := range images {
		if i != idx {
			images[i].Names = slices.DeleteFunc(images[i].Names, func(n string) bool { return slices.Contains(rec.Names, n) })
		}
	}
	dropDuplicateNames(images)

	newJSON, err := json.Marshal(images)
	if err != nil {
		return false, err
	}
	oldJSON, err := json.Marshal(s.images)
	if err != nil {
		return false, err
	}
	var stale []BigData
	for _, b := range img.BigData {
		if cur, err := s.root.ReadFile(s.paths.bigDataPath(img.ID, b.Key)); err != nil || !bytes.Equal(cur, b.Data) {
			stale = append(stale, b)
		}
	}
	if bytes.Equal(newJSON, oldJSON) && len(stale) == 0 {
		return false, nil
	}

	if len(stale) > 0 {
		if err := s.mkdir(path.Join(s.paths.imagesDir, img.ID)); err != nil {
			return false, fmt.Errorf("image %s: %w", img.ID, err)
		}
		for _, b := range stale {
			if err := s.writeFileAtomic(s.paths.bigDataPath(img.ID, b.Key), b.Data); err != nil {
				return false, fmt.Errorf("image %s: big data %q: %w", img.ID, b.Key, err)
			}
		}
	}
	faultpoint.Hit("image-bigdata-written")
	if !bytes.Equal(newJSON, oldJSON) {
		if err := s.writeImages(images, newJSON); err != nil {
			return false, fmt.Errorf("image %s: %w", img.ID, err)
		}
		faultpoint.Hit("image-recorded")
	}
	return true, nil
}

// dropDuplicateNames leaves each name on the last image that has it, as the storage library repairs
// a read-write store on load (a read-only one it refuses to read at all).
func dropDuplicateNames(images []storage.Image) {
	owner := map[string]int{}
	for i := range images {
		for _, n := range images[i].Names {
			if j, ok := owner[n]; ok && j != i {
				images[j].Names = slices.DeleteFunc(images[j].Names, func(m string) bool { return m == n })
			}
			owner[n] = i
		}
	}
}

// dedupe keeps the first occurrence of each string.
func dedupe(list []string) []string {
	seen := make(map[string]bool, len(list))
	res := make([]string, 0, len(list))
	for _, s := range list {
		if !seen[s] {
			seen[s] = true
			res = append(res, s)
		}
	}
	return res
}

func copyImage(i storage.Image) storage.Image {
	i.Digests = slices.Clone(i.Digests)
	i.Names = slices.Clone(i.Names)
	i.NamesHistory = slices.Clone(i.NamesHistory)
	i.MappedTopLayers = slices.Clone(i.MappedTopLayers)
	i.BigDataNames = slices.Clone(i.BigDataNames)
	i.BigDataSizes = maps.Clone(i.BigDataSizes)
	i.BigDataDigests = maps.Clone(i.BigDataDigests)
	i.Flags = maps.Clone(i.Flags)
	return i
}
