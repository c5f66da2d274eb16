package testimage

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	digest "github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Helpers for crafted (broken or hostile) layouts: write a good image with WriteLayout, then damage
// it with these, as a malicious or broken registry would serve it.

// BlobPath is the file that holds blob d in the layout at dir.
func BlobPath(dir string, d digest.Digest) string {
	return filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded())
}

// AddBlob stores data as a blob of the layout at dir, for a crafted manifest to point to, and
// returns its descriptor (without a media type).
func AddBlob(dir string, data []byte) (v1.Descriptor, error) {
	blobs, err := initLayout(dir)
	if err != nil {
		return v1.Descriptor{}, err
	}
	return writeBlob(blobs, data)
}

// EditImage rewrites the image tag points to in the layout at dir: edit may change its manifest
// (e.g. a layer descriptor) and its config (e.g. the diff IDs). The config and manifest are then
// stored as new blobs, so their digests stay true, and tag points to the new manifest. It returns
// the new manifest and config digests.
func EditImage(dir, tag string, edit func(m *v1.Manifest, c *v1.Image)) (manifest, config digest.Digest, err error) {
	var idx v1.Index
	if err := ReadJSONFile(filepath.Join(dir, v1.ImageIndexFile), &idx); err != nil {
		return "", "", err
	}
	var desc *v1.Descriptor
	for i := range idx.Manifests {
		if idx.Manifests[i].Annotations[v1.AnnotationRefName] == tag {
			desc = &idx.Manifests[i]
		}
	}
	if desc == nil || desc.MediaType != v1.MediaTypeImageManifest {
		return "", "", fmt.Errorf("%s has no single-platform image tagged %q", dir, tag)
	}
	var m v1.Manifest
	if err := ReadJSONFile(BlobPath(dir, desc.Digest), &m); err != nil {
		return "", "", err
	}
	var c v1.Image
	if err := ReadJSONFile(BlobPath(dir, m.Config.Digest), &c); err != nil {
		return "", "", err
	}
	edit(&m, &c)
	blobs := filepath.Join(dir, "blobs", "sha256")
	cfgDesc, err := writeBlob(blobs, mustJSON(c))
	if err != nil {
		return "", "", err
	}
	m.Config.Digest, m.Config.Size = cfgDesc.Digest, cfgDesc.Size
	manDesc, err := writeBlob(blobs, mustJSON(m))
	if err != nil {
		return "", "", err
	}
	manDesc.MediaType = v1.MediaTypeImageManifest
	manDesc.Annotations = map[string]string{v1.AnnotationRefName: tag}
	return manDesc.Digest, cfgDesc.Digest, addToIndex(dir, tag, manDesc)
}

// ReadJSONFile decodes the JSON file at path into v; its error names the file.
func ReadJSONFile(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
