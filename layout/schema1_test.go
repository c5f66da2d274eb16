package layout

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/storage"
)

// schema1Manifest is a signed Docker schema 1 manifest of layers (base first) with a throwaway entry
// between each two of them; the top history entry says linux/arm64 and was created at created.
func schema1Manifest(t *testing.T, layers []testLayer, created time.Time) []byte {
	t.Helper()
	var fsLayers []manifest.Schema1FSLayers
	var history []manifest.Schema1History
	for i, l := range slices.Backward(layers) { // top first
		compat := map[string]any{"id": fmt.Sprintf("%064x", 2*i+2), "parent": fmt.Sprintf("%064x", 2*i+1), "created": created}
		if i == len(layers)-1 {
			compat["architecture"], compat["os"] = "arm64", "linux"
		}
		if i == 0 {
			delete(compat, "parent")
		}
		fsLayers = append(fsLayers, manifest.Schema1FSLayers{BlobSum: l.meta.CompressedDigest})
		history = append(history, manifest.Schema1History{V1Compatibility: mustJSON(t, compat)})
		if i > 0 {
			throwaway := map[string]any{"id": fmt.Sprintf("%064x", 2*i+1), "parent": fmt.Sprintf("%064x", 2*i), "throwaway": true}
			fsLayers = append(fsLayers, manifest.Schema1FSLayers{BlobSum: layers[0].meta.CompressedDigest})
			history = append(history, manifest.Schema1History{V1Compatibility: mustJSON(t, throwaway)})
		}
	}
	m, err := manifest.Schema1FromComponents(nil, fsLayers, history, "arm64")
	if err != nil {
		t.Fatal(err)
	}
	data, err := m.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// A schema 1 image is recorded as the image library records one: ID from Schema1.ImageID over the
// diff IDs, the manifest under both manifest keys and no config, the creation date of the top history
// entry; the storage library then reads it back without problems, and inspect shows its platform.
func TestPutImageSchema1(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	base := commitTestLayer(t, s, "", baseEntries)
	child := commitTestLayer(t, s, base.meta.ID, childEntries)
	created := time.Date(2016, 5, 6, 7, 8, 9, 0, time.UTC)
	data := schema1Manifest(t, []testLayer{base, child}, created)
	diffIDs := []digest.Digest{base.meta.DiffID, child.meta.DiffID}

	for name, bad := range map[string]Image{
		"a diff ID for the throwaway layer": {Manifest: data, DiffIDs: append(slices.Clone(diffIDs), base.meta.DiffID), Names: []string{"example.com/old:1"}},
		"a manifest that is not schema 1":   {Manifest: []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}`), DiffIDs: diffIDs},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := s.PutImage(bad); err == nil {
				t.Errorf("%s: PutImage succeeded", name)
			}
		})
	}

	img := Image{Manifest: data, DiffIDs: diffIDs, Names: []string{"example.com/old:1"}, Source: "docker://example.com/old:1"}
	if _, err := s.PutImage(img); err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Schema1FromManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	wantID, err := m.ImageID(diffIDs)
	if err != nil {
		t.Fatal(err)
	}
	manifestDigest, err := manifest.Digest(data)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := s.Image(wantID)
	if !ok {
		t.Fatalf("no image %s (the image library's ID); images %v", wantID, s.Images())
	}
	if id, err := img.ID(); err != nil || id != wantID {
		t.Errorf("Image.ID() = %s, %v; want %s", id, err, wantID)
	}
	wantKeys := []string{storage.ImageDigestManifestBigDataNamePrefix + "-" + manifestDigest.String(), storage.ImageDigestBigDataKey}
	if got.TopLayer != child.meta.ID || got.Digest != manifestDigest || !got.Created.Equal(created) || !slices.Equal(got.BigDataNames, wantKeys) {
		t.Errorf("record: top %s, digest %s, created %s, big data %v; want %s, %s, %s, %v",
			got.TopLayer, got.Digest, got.Created, got.BigDataNames, child.meta.ID, manifestDigest, created, wantKeys)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	snap, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := snap.Info(got); err != nil || info.Platform != "linux/arm64" || len(info.Layers) != 2 {
		t.Errorf("info %+v, %v; want platform linux/arm64 and 2 layers", info, err)
	}
	if r, err := Check(t.Context(), dir, CheckOptions{Deep: true}); err != nil || !r.OK() {
		t.Errorf("check: %v, %v", r, err)
	}
}

// The check derives a schema 1 image's ID as the image library does and says when the record's differs
// (a reader would pair the image with other content).
func TestCheckFindsWrongSchema1ImageID(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	base := commitTestLayer(t, s, "", baseEntries)
	meta, err := schema1MetaOf(Image{Manifest: schema1Manifest(t, []testLayer{base}, time.Now()), DiffIDs: []digest.Digest{base.meta.DiffID}, Names: []string{"example.com/old:1"}})
	if err != nil {
		t.Fatal(err)
	}
	meta.ID = strings.Repeat("c", 64)
	putImage(t, s, meta)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := Check(t.Context(), dir, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(r.Problems, func(p Problem) bool { return strings.Contains(p.String(), "derives image ID") }) {
		t.Errorf("problems %v; want one saying the image library derives another image ID", r.Problems)
	}
}
