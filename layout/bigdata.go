package layout

import (
	"encoding/base64"
	"fmt"
	"path"
	"strings"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/storage"
)

// bigData is one named blob stored beside an image record: the config under "sha256:<hex>", the
// manifest under "manifest-<digest>" and "manifest", a manifest list under "manifest-<list digest>".
type bigData struct {
	Key  string
	Data []byte
}

// bigDataFileName is the storage library's makeBigDataBaseName: a key made only of [a-z0-9.] is its
// own file name, any other key's file is "=" + base64(key).
func bigDataFileName(key string) string {
	for _, c := range []byte(key) {
		if c != '.' && (c < '0' || c > '9') && (c < 'a' || c > 'z') {
			return "=" + base64.StdEncoding.EncodeToString([]byte(key))
		}
	}
	return key
}

// bigDataPath is where an image's big data item is kept.
func (p storePaths) bigDataPath(imageID, key string) string {
	return path.Join(p.imagesDir, imageID, bigDataFileName(key))
}

// isManifestKey is the storage library's bigDataNameIsManifest: such keys make the image findable by
// the data's digest ("name@sha256:…").
func isManifestKey(key string) bool {
	return strings.HasPrefix(key, storage.ImageDigestManifestBigDataNamePrefix)
}

// bigDataDigest is the digest images.json records for a big-data item: for manifest keys the manifest
// digest (which ignores schema1 signatures), as the image library passes manifest.Digest to the store;
// otherwise the sha256 of the data. Keys that name a digest must match it, so that "name@digest"
// lookups never find the wrong content.
func bigDataDigest(key string, data []byte) (digest.Digest, error) {
	var d digest.Digest
	if isManifestKey(key) {
		var err error
		if d, err = manifest.Digest(data); err != nil {
			return "", fmt.Errorf("big data %q: digesting manifest: %w", key, err)
		}
		if named, ok := strings.CutPrefix(key, storage.ImageDigestManifestBigDataNamePrefix+"-"); ok && digest.Digest(named) != d {
			return "", fmt.Errorf("big data %q holds a manifest with digest %s", key, d)
		}
		return d, nil
	}
	d = digest.Canonical.FromBytes(data)
	if named := digest.Digest(key); named.Validate() == nil && named.Algorithm() == digest.Canonical && named != d {
		return "", fmt.Errorf("big data %q holds data with digest %s", key, d)
	}
	return d, nil
}
