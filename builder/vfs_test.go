package builder

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cargohold/cargohold/internal/testenv"
	"github.com/cargohold/cargohold/internal/testimage"
	"github.com/cargohold/cargohold/layout"
	"github.com/opencontainers/go-digest"
)

// A vfs store holds each layer as a whole tree: the storage library (vfs driver) must accept it and
// regenerate every layer's diff, and the top layer's tree must be the image's root filesystem with
// the whiteout and the opaque dir applied.
func TestPublishVFSStore(t *testing.T) {
	testenv.RequireRoot(t)
	fx := fixtures
	dir := filepath.Join(t.TempDir(), "store")
	store := openStoreAt(t, dir, layout.Options{Driver: layout.VFS})
	p := &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t)}}
	for _, nt := range []string{"app:1", "app-zstd:1", "other:1"} {
		mustPublish(t, p, fx.ref(nt), "localhost/cargotest/"+nt)
	}
	if err := testimage.VerifyStore(dir, "vfs"); err != nil {
		t.Fatalf("the storage library (vfs) does not accept the store: %v", err)
	}
	for _, gone := range []string{"overlay", "overlay-layers", "overlay-images"} {
		if _, err := os.Lstat(filepath.Join(dir, gone)); err == nil {
			t.Errorf("a vfs store has %s", gone)
		}
	}

	w := fx.written["app:1"]
	var diffIDs []digest.Digest
	for _, l := range w.Layers {
		diffIDs = append(diffIDs, l.DiffID)
	}
	top := filepath.Join(dir, "vfs", "dir", layout.ChainIDs(diffIDs)[len(diffIDs)-1])
	if _, err := os.Lstat(filepath.Join(top, "data/deleted.txt")); !os.IsNotExist(err) {
		t.Errorf("the whiteout was not applied: data/deleted.txt: %v", err)
	}
	if names := dirNames(t, filepath.Join(top, "data/opq")); !slices.Equal(names, []string{"new"}) {
		t.Errorf("the opaque dir holds %v, want only [new]", names)
	}
	if data, err := os.ReadFile(filepath.Join(top, "data/keep.txt")); err != nil || string(data) != testimage.KeepV3 {
		t.Errorf("data/keep.txt = %q, %v; want the top layer's %q", data, err, testimage.KeepV3)
	}
	if _, err := os.Stat(filepath.Join(top, "bin/busybox")); err != nil {
		t.Errorf("the base layer's files are not in the top layer's tree: %v", err)
	}

	// Opening it again without a driver keeps vfs; asking for overlay is refused.
	closeStore(t, store)
	if s, err := layout.OpenWithOptions(t.Context(), dir, layout.Options{}); err != nil || s.Driver() != layout.VFS {
		t.Errorf("reopened: driver %v, %v; want vfs", s.Driver(), err)
	} else {
		closeStore(t, s)
	}
	if _, err := layout.OpenWithOptions(t.Context(), dir, layout.Options{Driver: layout.Overlay}); err == nil {
		t.Error("a vfs store opened as overlay")
	}
}
