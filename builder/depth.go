package builder

import (
	"fmt"

	"github.com/cargohold/cargohold/layout"
)

// Podman 4.x (containers/storage 1.45) mounts a container's layers with one overlay mount whose
// options, at most one page, list every lower layer of an additional store by its absolute short
// link (how long that list gets is layout's: layout.OverlayLowerLen). Past a page it retries with paths relative to its own
// store, which cannot reach an additional store ("mountfrom re-exec output: no such file or
// directory"), so a deep image does not run from a store with a long path. Measured with Podman
// 4.3.1 (Debian 12), rootful, from a store with a 21-character path and a 15-character graphroot: an
// image of 65 layers ran and one of 66 did not (options of 4117 bytes, as the error shows them);
// rootless with native overlay and the graphroot in the user's home (47 characters), 64 ran and 65
// did not. Podman's own pulled store in the same role fails alike. Podman 5.4 and 5.8 have no such page
// limit; what stops them (and 4.3 with fuse-overlayfs, at 128) is the library's depth limit, "max
// depth exceeded" past maxLayers (scripts/podman-layer-limit, docs/PODMAN-MATRIX.md).
const (
	// mountOptionsPage holds the options and the NUL that ends them.
	mountOptionsPage = 4096
	// mountOptionsReserve is the rest of the options: "lowerdir=", ",upperdir=" and ",workdir=" in
	// the reader's own graphroot ("<graphroot>/overlay/<64 hex>/diff" and "/work"), ",volatile", and
	// rootless ",userxattr": 224 bytes in the measurement, 248 with the default rootful graphroot
	// /var/lib/containers/storage, about 290 with a rootless one in a home directory. 300 bytes
	// puts the limit at 64 layers for the measured 21-character path, as measured rootless.
	mountOptionsReserve = 300
	// maxLayers is the most layers any Podman version (4.3, 5.4, 5.8) mounts: 500 ran, 501 did not.
	maxLayers = 500
)

// podman4LayerLimit is how many layers an image may have for Podman 4.x to mount it from an
// additional overlay store at storeDir (its absolute path as readers name it).
func podman4LayerLimit(storeDir string) int {
	n := 0
	for mountOptionsReserve+layout.OverlayLowerLen(storeDir, n+1) < mountOptionsPage {
		n++
	}
	return n
}

// checkDepth returns a warning about an image of n layers if Podman 4.x readers (or, past maxLayers, any
// reader) cannot mount
// it from the store (never for a vfs store, which mounts nothing), or with strict, an error instead.
func checkDepth(store *layout.Store, n int, strict bool) (warning string, err error) {
	if store.Driver() != layout.Overlay {
		return "", nil
	}
	limit, readers := podman4LayerLimit(store.Dir()), "Podman 4.x cannot"
	if n > maxLayers {
		limit, readers = maxLayers, "no Podman version (4.3 to 5.8) can"
	}
	if n <= limit {
		return "", nil
	}
	problem := fmt.Sprintf("%d layers, but %s run an image of more than %d layers from a store at %s "+
		"(each layer's path in the store goes into one overlay mount's options, at most 4096 bytes, and the "+
		"storage library refuses more than %d): publish it into a store with a shorter path, or rebuild the "+
		"image with fewer layers", n, readers, limit, store.Dir(), maxLayers)
	if strict {
		return "", fmt.Errorf("refused in strict mode: the image has %s", problem) // Publish names the image
	}
	return "the image has " + problem, nil // the CLI prefixes the image reference
}
