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
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/storage"
	"go.podman.io/storage/pkg/stringid"
)

// Image is what an image is. PutImage derives from it everything the store records: the image ID,
// top layer and creation date from the config, the big-data keys and the metadata JSON.
//
// A Docker schema 1 image has no config: Config is nil, Manifest is the schema 1 manifest and DiffIDs
// lists the diff IDs of its layers that are not throwaway (schema 1 records none; they are learned
// while unpacking). It is recorded as the image library records it (see schema1MetaOf).
type Image struct {
	Config   []byte          // the image config blob; its sha256 is the image ID; nil for schema 1
	DiffIDs  []digest.Digest // schema 1 only: the diff IDs of the non-throwaway layers, base first
	Manifest []byte          // the image's manifest
	List     []byte          // the manifest list or OCI index the manifest was chosen from; nil if none
	Names    []string        // full names like "docker.io/library/alpine:3.20"
	Source   string          // the reference it was published from, e.g. "docker://reg/x:1"
}

// ImageID is the ID the store gives an image with this config: the config digest's hex.
func ImageID(config []byte) string { return digest.Canonical.FromBytes(config).Encoded() }

// ID is the ID the store gives img (see ImageID and schema1MetaOf).
func (img Image) ID() (string, error) {
	if img.Config != nil {
		return ImageID(img.Config), nil
	}
	meta, err := schema1MetaOf(img)
	return meta.ID, err
}

// HasManifest reports whether the store holds the image id (any image for "") reachable by the
// manifest (or list) digest d under every one of names: what publishing it again would not change.
// A superseded image counts only for no names (publishing it under names makes it current again).
func (s *Store) HasManifest(id string, d digest.Digest, names []string) bool {
	_, ok := s.ImageWithManifest(id, d, names)
	return ok
}

// HasName reports whether an image of the store is recorded under name ("reg/app:1"), current or
// superseded.
func (s *Store) HasName(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.images.hasName(name)
}

// Manifest is the manifest (or manifest list) with digest d that image id holds.
func (s *Store) Manifest(id string, d digest.Digest) ([]byte, error) {
	return s.root.ReadFile(s.paths.bigDataPath(id, manifestKey(d)))
}

// ImageWithManifest returns the first image HasManifest(id, d, names) would find.
func (s *Store) ImageWithManifest(id string, d digest.Digest, names []string) (storage.Image, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.images.withManifest(id, d, names)
	if i < 0 {
		return storage.Image{}, false
	}
	return copyImage(s.images.list[i]), true
}

// configKey is the big-data key of an image's config, as the image library stores it: the config
// digest, which is also the image ID.
func configKey(imageID string) string {
	return digest.NewDigestFromEncoded(digest.Canonical, imageID).String()
}

// manifestKey is the big-data key under which Podman finds a manifest by its digest.
func manifestKey(d digest.Digest) string {
	return manifestKeyPrefix + d.String()
}

// PutImage adds the image, or updates the image with the same ID, as the image library's commit does
// through the storage library (see putImages). The image's layers must be committed already. A new
// image gets cargohold's record (Metadata: its source and publication time); an existing one keeps its
// own, and one that was superseded is current again. An image left with no names because img took
// its last one is superseded in the same write (supersede.go): it stays under its digested names,
// for containers running from it, until GC's grace period has passed; it is never left unnamed.
//
// It returns changed=false and writes nothing when the store already holds exactly this.
func (s *Store) PutImage(img Image) (changed bool, err error) {
	wait, err := s.QueueImage(img)
	if err != nil {
		return false, err
	}
	put, err := wait()
	return put.Changed, err
}

// Put is what recording a queued image did.
type Put struct {
	Changed bool // false: the store held exactly this already
	New     bool // the store had no image with this ID before
}

// QueueImage is PutImage in two steps: it queues img to be recorded after the images queued before
// it, and returns a function that waits until img is recorded and reports as PutImage does. Images
// queued while a group is being recorded are recorded as the next group, in queue order, with one
// write of images.json (see putImages): a run publishing many images at once does not write the
// whole images.json, and fsync it, once for every image. The error is for an img that cannot be
// recorded at all.
func (s *Store) QueueImage(img Image) (wait func() (Put, error), err error) {
	meta, err := imageMetaOf(img)
	if err != nil {
		return nil, err
	}
	return s.queueImage(meta), nil
}

// An imageRequest is one image waiting in the queue for its group to be recorded.
type imageRequest struct {
	meta     imageMeta
	put      Put
	dropped  []string // the images its record left without names
	err      error
	finished bool // set by the goroutine recording its group, under s.recording
}

// queueImage queues img; the function returned waits for it (see QueueImage).
func (s *Store) queueImage(img imageMeta) func() (Put, error) {
	r := &imageRequest{meta: img}
	s.pendingMu.Lock()
	s.pendingImages = append(s.pendingImages, r)
	s.pendingMu.Unlock()
	return func() (Put, error) {
		s.recording.Lock()
		defer s.recording.Unlock()
		if !r.finished { // else a group recorded while this one waited took it along
			s.recordQueued()
		}
		return r.put, r.err
	}
}

// FlushImages waits until every image queued so far is recorded: what the store says about its
// images (Image, HasManifest, ...) then includes them.
func (s *Store) FlushImages() {
	s.recording.Lock()
	defer s.recording.Unlock()
	s.recordQueued()
}

// recordQueued records the images queued now as one group. The caller holds s.recording.
func (s *Store) recordQueued() {
	s.pendingMu.Lock()
	group := s.pendingImages
	s.pendingImages = nil
	s.pendingMu.Unlock()
	if len(group) > 0 {
		s.putImages(group)
	}
}

// imageMetaOf is what the store records about img.
func imageMetaOf(img Image) (imageMeta, error) {
	if img.Config == nil {
		return schema1MetaOf(img)
	}
	id := ImageID(img.Config)
	var config v1.Image
	if err := json.Unmarshal(img.Config, &config); err != nil {
		return imageMeta{}, fmt.Errorf("image %s: parsing its config: %w", id, err)
	}
	if len(config.RootFS.DiffIDs) == 0 {
		return imageMeta{}, fmt.Errorf("image %s has no layers; Podman cannot run it from an additional store", id)
	}
	manifestDigest, err := manifest.Digest(img.Manifest)
	if err != nil {
		return imageMeta{}, fmt.Errorf("image %s: digesting its manifest: %w", id, err)
	}
	ids := ChainIDs(config.RootFS.DiffIDs)
	meta := imageMeta{
		ID:       id,
		Digest:   manifestDigest,
		TopLayer: ids[len(ids)-1],
		Names:    img.Names,
		BigData: []bigData{
			{Key: configKey(id), Data: img.Config},
			{Key: manifestKey(manifestDigest), Data: img.Manifest},
			{Key: storage.ImageDigestBigDataKey, Data: img.Manifest},
		},
	}
	if config.Created != nil {
		meta.Created = *config.Created
	}
	return withListAndMetadata(meta, img)
}

// schema1MetaOf is what the image library's containers-storage destination records for a Docker
// schema 1 image (storage_dest.go, CommitWithOptions): the manifest as it is, under both manifest
// keys, and no config item; the image ID is the digest of the schema 2 config the image library
// derives from the manifest and the layers' diff IDs (Schema1.ImageID, as computeID), the creation
// date is the one of the manifest's top history entry (Schema1.Inspect), and throwaway layers have no
// layer in the store.
func schema1MetaOf(img Image) (imageMeta, error) {
	if mt := manifest.GuessMIMEType(img.Manifest); mt != manifest.DockerV2Schema1SignedMediaType && mt != manifest.DockerV2Schema1MediaType {
		return imageMeta{}, fmt.Errorf("an image without a config must have a Docker schema 1 manifest, not %q", mt)
	}
	m, err := manifest.Schema1FromManifest(img.Manifest)
	if err != nil {
		return imageMeta{}, fmt.Errorf("parsing its schema 1 manifest: %w", err)
	}
	if want := Schema1LayerCount(m); len(img.DiffIDs) != want {
		return imageMeta{}, fmt.Errorf("the schema 1 manifest has %d layers that are not throwaway, but %d diff IDs were given", want, len(img.DiffIDs))
	}
	if len(img.DiffIDs) == 0 {
		return imageMeta{}, errors.New("the image has no layers; Podman cannot run it from an additional store")
	}
	id, err := m.ImageID(img.DiffIDs)
	if err != nil {
		return imageMeta{}, fmt.Errorf("computing its image ID: %w", err)
	}
	inspect, err := m.Inspect(nil)
	if err != nil {
		return imageMeta{}, fmt.Errorf("image %s: reading its schema 1 history: %w", id, err)
	}
	manifestDigest, err := manifest.Digest(img.Manifest) // without the signatures, as the image library digests it
	if err != nil {
		return imageMeta{}, fmt.Errorf("image %s: digesting its manifest: %w", id, err)
	}
	ids := ChainIDs(img.DiffIDs)
	meta := imageMeta{
		ID:       id,
		Digest:   manifestDigest,
		TopLayer: ids[len(ids)-1],
		Names:    img.Names,
		Created:  *inspect.Created,
		BigData: []bigData{
			{Key: manifestKey(manifestDigest), Data: img.Manifest},
			{Key: storage.ImageDigestBigDataKey, Data: img.Manifest},
		},
	}
	return withListAndMetadata(meta, img)
}

// Schema1LayerCount is the number of layers of a schema 1 image that the store holds: those not
// marked throwaway, which the image library does not create (storage_dest.go, commitLayer).
func Schema1LayerCount(m *manifest.Schema1) int {
	n := 0
	for _, l := range m.LayerInfos() {
		if !l.EmptyLayer {
			n++
		}
	}
	return n
}

// withListAndMetadata adds img's manifest list, if any, and cargohold's metadata to meta.
func withListAndMetadata(meta imageMeta, img Image) (imageMeta, error) {
	if img.List != nil {
		// As Podman does: the index is kept too, so "name@<index digest>" finds the image.
		listDigest, err := manifest.Digest(img.List)
		if err != nil {
			return imageMeta{}, fmt.Errorf("image %s: digesting its manifest list: %w", meta.ID, err)
		}
		meta.BigData = append(meta.BigData, bigData{Key: manifestKey(listDigest), Data: img.List})
	}
	var err error
	if meta.Metadata, err = imageMetadataJSON(meta.Digest, Metadata{Source: img.Source, Published: time.Now().UTC()}); err != nil {
		return imageMeta{}, err
	}
	return meta, nil
}

// imageMeta is what putImages records about an image.
type imageMeta struct {
	ID       string        // config digest hex
	Digest   digest.Digest // manifest digest
	TopLayer string
	Names    []string  // full names like "docker.io/library/alpine:3.20"
	Created  time.Time // from the image config
	Metadata string    // JSON string stored as-is, with a new image only
	BigData  []bigData // config under "sha256:<hex>", manifest under "manifest-<digest>" and "manifest"
}

func (m *imageMeta) validate() error {
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

// putImages records the images of a group, in order, each as the storage library would: new names
// go first and into names-history, big data items are written and recorded with size and digest,
// metadata is set on a new image. Each of an image's names is taken away from any other image,
// because one duplicate name makes the whole read-only store unreadable, and images left without
// names are superseded (or, when they cannot be, removed). Big-data files are written first,
// images.json last (atomically, once for the group), then images.lock records a write; the big data
// of removed images goes after that. An image that cannot be recorded gets its error; the others are
// recorded. The records are marshalled once for the group: applying an image costs what it changes,
// not a marshalling of every record (a publish of N images into a store of as many made that N²).
func (s *Store) putImages(group []*imageRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range group {
		r.finished = true
	}
	if s.closed {
		for _, r := range group {
			r.err = errors.New("layout: store is closed")
		}
		return
	}
	images := s.images.list
	var recorded []*imageRequest
	unsynced := false // big data written without fsyncs
	changed := false  // images differ from the store's records
	for _, r := range group {
		r.put.New = !slices.ContainsFunc(images, func(i storage.Image) bool { return i.ID == r.meta.ID })
		next, drop, imageChanged, err := s.applyImage(images, r.meta, !r.put.New)
		if r.err = err; err != nil {
			continue
		}
		r.put.Changed, r.dropped = imageChanged, drop
		unsynced = unsynced || (imageChanged && r.put.New)
		changed = changed || imageChanged
		images = next
		recorded = append(recorded, r)
	}
	if changed {
		written, err := s.writeChangedImages(images, unsynced)
		if err != nil {
			for _, r := range recorded {
				r.put.Changed, r.err = false, fmt.Errorf("image %s: %w", r.meta.ID, err)
			}
			return
		}
		if written {
			faultpoint.Hit("image-recorded")
		}
	}
	for _, r := range recorded {
		// An image dropped by one image of the group may have been put back by a later one.
		gone := slices.DeleteFunc(r.dropped, func(id string) bool { return s.images.index(id) >= 0 })
		r.err = s.removeBigData(gone)
	}
}

// writeChangedImages writes images as the store's records, unless they marshal as images.json
// holds already; with unsynced, big data was written without fsyncs, and the filesystem is synced
// first. The caller holds s.mu.
func (s *Store) writeChangedImages(images []storage.Image, unsynced bool) (written bool, err error) {
	data, err := json.Marshal(images)
	if err != nil {
		return false, err
	}
	if old, err := s.marshalledImages(); err == nil && bytes.Equal(data, old) {
		return false, nil
	}
	if unsynced {
		if err := s.syncFS(); err != nil {
			return false, err
		}
	}
	return true, s.writeImages(images, data)
}

// applyImage returns the records images with img added or updated, and the IDs of the images it
// leaves without names; img's big data that is missing or stale on disk is written on the way.
// changed is false when the store already holds exactly img. The caller holds s.mu.
//
// The big data of an image the store already has is written durably at once; that of a new image is
// made durable by the syncfs before images.json records it (see putImages): one syncfs for a group
// instead of two fsyncs for each item.
func (s *Store) applyImage(images []storage.Image, img imageMeta, durable bool) (_ []storage.Image, dropped []string, changed bool, err error) {
	if err := img.validate(); err != nil {
		return nil, nil, false, fmt.Errorf("image %s: %w", img.ID, err)
	}
	digests := make([]digest.Digest, len(img.BigData))
	for i, b := range img.BigData {
		if digests[i], err = bigDataDigest(b.Key, b.Data); err != nil {
			return nil, nil, false, fmt.Errorf("image %s: %w", img.ID, err)
		}
	}
	if img.TopLayer != "" && s.layerIndex(img.TopLayer) < 0 {
		return nil, nil, false, fmt.Errorf("image %s: top layer %s is not committed", img.ID, img.TopLayer)
	}
	next, dropped, touched, err := withImage(images, img, digests, s.clock())
	if err != nil {
		return nil, nil, false, err
	}
	stale := s.staleBigData(img)
	if !recordsDiffer(images, next, touched) && len(stale) == 0 {
		return images, nil, false, nil
	}
	if err := s.writeBigData(img.ID, stale, durable); err != nil {
		return nil, nil, false, err
	}
	faultpoint.Hit("image-bigdata-written")
	return next, dropped, true, nil
}

// recordsDiffer says whether next, which withImage made from base changing only the records of the
// images touched, differs from base (as images.json would: marshalled).
func recordsDiffer(base, next []storage.Image, touched []string) bool {
	if len(base) != len(next) {
		return true
	}
	for _, id := range touched {
		i := slices.IndexFunc(base, func(img storage.Image) bool { return img.ID == id })
		j := slices.IndexFunc(next, func(img storage.Image) bool { return img.ID == id })
		if i != j {
			return true
		}
		if i >= 0 {
			a, errA := json.Marshal(base[i])
			b, errB := json.Marshal(next[j])
			if errA != nil || errB != nil || !bytes.Equal(a, b) {
				return true
			}
		}
	}
	return false
}

// withImage returns the image records base with img added or updated (digests are its big data's),
// the IDs of the images dropped because they were left without names, and the IDs of every image
// whose record it changed, added or dropped (touched). base is left as it is: a record is copied
// before it is changed, the others are shared.
func withImage(base []storage.Image, img imageMeta, digests []digest.Digest, now time.Time) (images []storage.Image, dropped, touched []string, err error) {
	images = slices.Clone(base)
	idx := slices.IndexFunc(images, func(i storage.Image) bool { return i.ID == img.ID })
	if idx >= 0 {
		images[idx] = copyImage(images[idx])
	} else {
		created := img.Created
		if created.IsZero() {
			created = time.Now().UTC() // as the storage library does without a creation date
		}
		images = append(images, storage.Image{ID: img.ID, Digest: img.Digest, TopLayer: img.TopLayer, Metadata: img.Metadata, Created: created})
		idx = len(images) - 1
	}
	rec := &images[idx]
	if rec.TopLayer != img.TopLayer {
		return nil, nil, nil, fmt.Errorf("image %s already exists with top layer %s, not %s", img.ID, rec.TopLayer, img.TopLayer)
	}
	if rec.Digest == "" {
		rec.Digest = img.Digest
	}
	recordBigData(rec, img.BigData, digests)

	// Names as the storage library's AddNames sets them: the new ones first, then the old ones, each
	// pushed to the front of names-history in that order.
	unsupersede(rec)
	rec.Names = dedupe(slices.Concat(img.Names, rec.Names))
	for _, n := range rec.Names {
		rec.NamesHistory = dedupe(slices.Concat([]string{n}, rec.NamesHistory))
	}
	touched = []string{img.ID}
	taken := func(n string) bool { return slices.Contains(rec.Names, n) }
	for i := range images {
		if i != idx && slices.ContainsFunc(images[i].Names, taken) {
			images[i] = copyImage(images[i])
			images[i].Names = slices.DeleteFunc(images[i].Names, taken)
			touched = append(touched, images[i].ID)
		}
	}
	touched = append(touched, dropDuplicateNames(images)...)
	// Only images without names change here: touched above, or nameless before (then dropped).
	images, dropped = settleNameless(base, images, now)
	return images, dropped, append(touched, dropped...), nil
}

// recordBigData records the big data items (with their digests) in rec.
func recordBigData(rec *storage.Image, items []bigData, digests []digest.Digest) {
	for i, b := range items {
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
}

// dropNameless removes the images that have no name: Podman lists them as <none>, and nothing says
// when they may go. A store cargohold manages never lists one (see settleNameless).
func dropNameless(images []storage.Image) (kept []storage.Image, dropped []string) {
	for _, img := range images {
		if len(img.Names) == 0 {
			dropped = append(dropped, img.ID)
		}
	}
	return slices.DeleteFunc(images, func(img storage.Image) bool { return len(img.Names) == 0 }), dropped
}

// staleBigData is the big data of img whose file is missing or has other content.
func (s *Store) staleBigData(img imageMeta) []bigData {
	var stale []bigData
	for _, b := range img.BigData {
		if cur, err := s.root.ReadFile(s.paths.bigDataPath(img.ID, b.Key)); err != nil || !bytes.Equal(cur, b.Data) {
			stale = append(stale, b)
		}
	}
	return stale
}

// writeBigData writes big data items of image id, each atomically, durable unless the caller
// syncs the filesystem before recording the image (a new image: no reader knows its files yet).
func (s *Store) writeBigData(id string, items []bigData, durable bool) error {
	if len(items) == 0 {
		return nil
	}
	if err := s.mkdir(path.Join(s.paths.imagesDir, id)); err != nil {
		return fmt.Errorf("image %s: %w", id, err)
	}
	for _, b := range items {
		if err := s.replaceFile(s.paths.bigDataPath(id, b.Key), b.Data, durable); err != nil {
			return fmt.Errorf("image %s: big data %q: %w", id, b.Key, err)
		}
	}
	return nil
}

// removeBigData removes the big-data dirs of images no longer recorded (no reader looks for them).
func (s *Store) removeBigData(ids []string) error {
	for _, id := range ids {
		if err := s.removeTree(path.Join(s.paths.imagesDir, id)); err != nil {
			return fmt.Errorf("image %s: removing its big data: %w", id, err)
		}
	}
	return nil
}

// dropDuplicateNames leaves each name on the last image that has it, as the storage library repairs
// a read-write store on load (a read-only one it refuses to read at all). It returns the IDs of the
// images that lost a name; their records are copied before they change (others may share them).
func dropDuplicateNames(images []storage.Image) (changed []string) {
	owner := map[string]int{}
	for i := range images {
		for _, n := range images[i].Names {
			if j, ok := owner[n]; ok && j != i {
				images[j] = copyImage(images[j])
				images[j].Names = slices.DeleteFunc(images[j].Names, func(m string) bool { return m == n })
				changed = append(changed, images[j].ID)
			}
			owner[n] = i
		}
	}
	return changed
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
