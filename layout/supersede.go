package layout

import (
	"encoding/json"
	"slices"
	"time"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/storage"
)

// An image that loses its last name (a tag moved to another image, rm, --prune) is superseded, not
// removed: containers that nodes started from it look it up by ID (podman inspect, commit, restart),
// and fail with "image not known" once its record is gone. So its record stays, under the digested
// names of the repositories it was known by ("reg/app@sha256:<manifest digest>", what `podman pull
// reg/app@sha256:…` records; never a nameless <none>), with the time it was superseded in cargohold's
// metadata, until GC finds that older than its grace period. Publishing it again makes it current.
// The mark and the names change in the same images.json write, so a crash leaves either both or none.

// supersededKey is the key of the superseded time inside cargohold's metadata object.
const supersededKey = "superseded"

// metadataOf is cargohold's record in the image's metadata JSON (zero for an image without one).
func metadataOf(img storage.Image) Metadata {
	var meta map[string]json.RawMessage
	var m Metadata
	if json.Unmarshal([]byte(img.Metadata), &meta) == nil && meta[metadataKey] != nil {
		_ = json.Unmarshal(meta[metadataKey], &m) // a record cargohold cannot read is no record
	}
	return m
}

// supersededSince says whether img is superseded, and since when. It decodes img's metadata: the
// store's records have their marks decoded once, when they are loaded or written (imageSet.marks);
// this is for a record being changed.
func supersededSince(img storage.Image) (time.Time, bool) {
	m := metadataOf(img)
	if m.Superseded == nil {
		return time.Time{}, false
	}
	return *m.Superseded, true
}

// withSupersededMark returns the metadata JSON with cargohold's superseded mark set to since, or
// without it for nil; everything else in it is kept (Podman's keys, cargohold's other fields). A
// metadata string that is not a JSON object is replaced: nothing in it could be read anyway.
func withSupersededMark(metadata string, since *time.Time) string {
	var meta map[string]json.RawMessage
	if json.Unmarshal([]byte(metadata), &meta) != nil || meta == nil {
		meta = map[string]json.RawMessage{}
	}
	var own map[string]json.RawMessage
	if json.Unmarshal(meta[metadataKey], &own) != nil || own == nil {
		own = map[string]json.RawMessage{}
	}
	if since == nil {
		delete(own, supersededKey)
	} else {
		own[supersededKey], _ = json.Marshal(since.UTC()) // a time always marshals
	}
	meta[metadataKey], _ = json.Marshal(own) // maps of raw JSON always marshal
	data, _ := json.Marshal(meta)
	return string(data)
}

// digestedNames are the names a superseded image is kept under: for each repository of the names it
// lost, "repo@<manifest digest>", as `podman pull repo@digest` names an image. None for an image
// without a manifest digest or names that do not parse.
func digestedNames(lost []string, d digest.Digest) []string {
	if d.Validate() != nil {
		return nil
	}
	var names []string
	for _, n := range lost {
		named, err := reference.ParseNormalizedNamed(n)
		if err != nil {
			continue
		}
		withDigest, err := reference.WithDigest(reference.TrimNamed(named), d)
		if err != nil {
			continue
		}
		names = append(names, withDigest.String())
	}
	return dedupe(names)
}

// settleNameless decides the fate of every image that has no name in after, the store's records
// about to be written (before are the records as they are): an image that had names before is
// superseded at now (see above), keeping an earlier superseded time; one that cannot get a digested
// name (every one is another image's: one name held twice would make Podman refuse the whole store),
// and one that had no name before either (left by an earlier version), is dropped. It returns the
// records to write and the IDs of the images dropped.
func settleNameless(before, after []storage.Image, now time.Time) (kept []storage.Image, dropped []string) {
	if !slices.ContainsFunc(after, func(img storage.Image) bool { return len(img.Names) == 0 }) {
		return after, nil // the common case: no name moved away, no held name read
	}
	held := map[string]bool{}
	for _, img := range after {
		for _, n := range img.Names {
			held[n] = true
		}
	}
	for i := range after {
		img := &after[i]
		if len(img.Names) > 0 {
			continue
		}
		j := slices.IndexFunc(before, func(b storage.Image) bool { return b.ID == img.ID })
		if j < 0 {
			continue
		}
		names := slices.DeleteFunc(digestedNames(before[j].Names, img.Digest), func(n string) bool { return held[n] })
		if len(names) == 0 {
			continue
		}
		since, ok := supersededSince(*img)
		if !ok {
			since = now.UTC()
			img.Metadata = withSupersededMark(img.Metadata, &since)
		}
		img.Names = names
		for _, n := range names {
			img.NamesHistory = dedupe(slices.Concat([]string{n}, img.NamesHistory))
			held[n] = true
		}
	}
	return dropNameless(after)
}

// unsupersede makes a superseded image current again (it is being published under names): its
// digested names, which cargohold gave it, and its mark go.
func unsupersede(img *storage.Image) {
	if _, ok := supersededSince(*img); ok {
		img.Names = nil
		img.Metadata = withSupersededMark(img.Metadata, nil)
	}
}
