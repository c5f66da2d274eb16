package layout

import (
	"slices"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/storage"
)

// imageSet is the store's image records, in images.json order, with what lookups need at hand: a
// resync asks, for each of its images, whether the store holds a name, an ID, a manifest, and
// scanning every record for each question made a resync of N tags cost N² record scans. Each
// record's superseded mark is decoded once, when the record enters the set.
//
// A set is never changed: every write of images.json makes a new one from the records written
// (newImageSet), and the store's records are only ever replaced that way (Store.setImages), so the
// indexes cannot go stale.
type imageSet struct {
	list []storage.Image
	// The indexes in list of the images with an ID, a name, a manifest big-data key
	// ("manifest-<digest>"), in list order. More than one image per ID or name only in a damaged
	// images.json; per manifest, one image per platform of a manifest list it holds.
	byID       map[string][]int
	byName     map[string][]int
	byManifest map[string][]int
	marks      []supersededMark // marks[i] is list[i]'s
}

// supersededMark is an image's superseded mark, decoded (supersededSince).
type supersededMark struct {
	since time.Time
	ok    bool
}

// newImageSet indexes the records list, which it takes over (nobody changes them afterwards). The
// marks of records whose metadata is as in prev (the set list replaces; nil for none) are taken
// from it, not decoded again.
func newImageSet(list []storage.Image, prev *imageSet) imageSet {
	s := imageSet{list: list, byID: make(map[string][]int, len(list)), byName: make(map[string][]int, len(list)),
		byManifest: make(map[string][]int, len(list)), marks: make([]supersededMark, len(list))}
	for i, img := range list {
		s.byID[img.ID] = append(s.byID[img.ID], i)
		for _, n := range img.Names {
			s.byName[n] = append(s.byName[n], i)
		}
		for _, k := range img.BigDataNames {
			if strings.HasPrefix(k, manifestKeyPrefix) {
				s.byManifest[k] = append(s.byManifest[k], i)
			}
		}
		s.marks[i] = prev.markOf(img)
	}
	return s
}

// manifestKeyPrefix starts every manifest big-data key (manifestKey).
const manifestKeyPrefix = storage.ImageDigestManifestBigDataNamePrefix + "-"

// markOf is img's superseded mark: the one s holds for the same record, else decoded.
func (s *imageSet) markOf(img storage.Image) supersededMark {
	if s != nil {
		if i := s.index(img.ID); i >= 0 && s.list[i].Metadata == img.Metadata {
			return s.marks[i]
		}
	}
	since, ok := supersededSince(img)
	return supersededMark{since: since, ok: ok}
}

// index is the index in list of the image with ID id, -1 if there is none.
func (s *imageSet) index(id string) int {
	if at := s.byID[id]; len(at) > 0 {
		return at[0]
	}
	return -1
}

// hasName says whether an image holds name.
func (s *imageSet) hasName(name string) bool { return len(s.byName[name]) > 0 }

// withManifest is the index of the first image (any for id "", else the one with ID id) that holds
// the manifest d under every one of names and is not superseded unless names is empty; -1 if none.
func (s *imageSet) withManifest(id string, d digest.Digest, names []string) int {
	key := manifestKey(d)
	// Every image that matches is among these, in list order.
	candidates := s.byManifest[key]
	if len(names) > 0 {
		candidates = s.byName[names[0]]
	} else if id != "" {
		candidates = s.byID[id]
	}
	for _, i := range candidates {
		img := s.list[i]
		if (id != "" && img.ID != id) || !slices.Contains(img.BigDataNames, key) ||
			slices.ContainsFunc(names, func(n string) bool { return !slices.Contains(img.Names, n) }) {
			continue
		}
		if !s.marks[i].ok || len(names) == 0 {
			return i
		}
	}
	return -1
}
