package builder

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cargohold/cargohold/internal/testenv"
	"github.com/cargohold/cargohold/internal/testimage"
	"github.com/cargohold/cargohold/layout"
	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/storage"
)

// writeSchema1Dir writes app:1's layers as a Docker schema 1 image in the image library's dir:
// layout (a schema 1 manifest cannot live in an OCI layout) and returns its reference. Above its
// base layer it has a throwaway layer (an empty tarball, as Docker recorded a metadata-only step),
// which stores hold no layer for.
func writeSchema1Dir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	type entry struct {
		data      []byte
		throwaway bool
	}
	var entries []entry // base first
	for i, l := range fixtures.written["app:1"].Layers {
		data, err := os.ReadFile(blobPath(filepath.Join(fixtures.dir, "app"), l.Digest))
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, entry{data: data})
		if i == 0 {
			entries = append(entries, entry{data: emptyGzipTar(t), throwaway: true})
		}
	}
	var fsLayers []manifest.Schema1FSLayers
	var history []manifest.Schema1History
	for i, e := range slices.Backward(entries) { // schema 1 lists the top layer first
		d := digest.FromBytes(e.data)
		if err := os.WriteFile(filepath.Join(dir, d.Encoded()), e.data, 0o644); err != nil {
			t.Fatal(err)
		}
		compat := map[string]any{"id": fmt.Sprintf("%064x", i+1), "created": time.Date(2020, 1, 2, 3, 4, 5+i, 0, time.UTC)}
		if i > 0 {
			compat["parent"] = fmt.Sprintf("%064x", i)
		}
		if e.throwaway {
			compat["throwaway"] = true
		}
		if i == len(entries)-1 {
			compat["architecture"], compat["os"] = "amd64", "linux"
			compat["config"] = map[string]any{"Cmd": []string{"/bin/sh"}, "Env": []string{"A=1"}}
		}
		v1, err := json.Marshal(compat)
		if err != nil {
			t.Fatal(err)
		}
		fsLayers = append(fsLayers, manifest.Schema1FSLayers{BlobSum: d})
		history = append(history, manifest.Schema1History{V1Compatibility: string(v1)})
	}
	m, err := manifest.Schema1FromComponents(nil, fsLayers, history, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	data, err := m.Serialize() // signed, as registries require
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string][]byte{"manifest.json": data, "version": []byte("Directory Transport Version: 1.1\n")} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return "dir:" + dir
}

// emptyGzipTar is an empty layer, as Docker wrote for steps that change no file.
func emptyGzipTar(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	if err := tar.NewWriter(gz).Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A Docker schema 1 image is published as the image library pulls it into containers-storage (what
// `podman pull` does): the same image ID (derived from the manifest and the layers' diff IDs), the
// same layers (none for the throwaway one), the manifest kept as it is and no config item.
func TestSchema1IsPublishedAsPodmanPullsIt(t *testing.T) {
	testenv.RequireRoot(t)
	ref := writeSchema1Dir(t)
	const name = "localhost/cargotest/schema1:1"
	store, dir := openStore(t)
	p := &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t)}}
	res := mustPublish(t, p, ref, name)
	if n := len(fixtures.written["app:1"].Layers); res.Action != Added || res.LayersFetched != n {
		t.Errorf("publish: %s with %d layers fetched; want added with %d (the throwaway layer is not stored)", res.Action, res.LayersFetched, n)
	}
	if err := testimage.VerifyStore(dir, "overlay"); err != nil {
		t.Fatal(err)
	}

	podman := newReferenceStore(t)
	if err := podman.pull(ref, name); err != nil {
		t.Fatalf("the image library pulling the schema 1 image: %v", err)
	}
	want := imageAndLayers(t, podman.Store, name)
	got := imageAndLayers(t, readStore(t, dir).Store, name)
	if got != want {
		t.Errorf("cargohold's store holds\n%s\nthe image library's\n%s", got, want)
	}
	if wantID := want[:64]; res.ImageID != wantID {
		t.Errorf("publish reported image ID %s; the image library's is %s", res.ImageID, wantID)
	}

	again := mustPublish(t, p, ref, name)
	if again.Action != Unchanged || again.LayersFetched != 0 || again.ImageID != res.ImageID {
		t.Errorf("publishing it again: %s, %d layers fetched, image %s; want unchanged, none, %s",
			again.Action, again.LayersFetched, again.ImageID, res.ImageID)
	}
}

// imageAndLayers describes the image called name in s as a reader sees it: ID, manifest digest,
// creation date, big-data keys and the diff IDs of its layers' chain, base first.
func imageAndLayers(t *testing.T, s storage.Store, name string) string {
	t.Helper()
	img, err := s.Image(name)
	if err != nil {
		t.Fatal(err)
	}
	var diffIDs []digest.Digest
	for id := img.TopLayer; id != ""; {
		l, err := s.Layer(id)
		if err != nil {
			t.Fatal(err)
		}
		diffIDs = append(diffIDs, l.UncompressedDigest)
		id = l.Parent
	}
	slices.Reverse(diffIDs)
	keys := slices.Sorted(slices.Values(img.BigDataNames))
	return fmt.Sprintf("%s manifest %s created %s top %s big data %v diff IDs %v",
		img.ID, img.Digest, img.Created.UTC().Format(time.RFC3339), img.TopLayer, keys, diffIDs)
}

// In a vfs store (layers unpacked onto a copy of their parent, so committed in order) a schema 1
// image shares the layers of the schema 2 image with the same content: unpacking reveals they are
// there, and nothing is added but the image.
func TestSchema1SharesLayersInVFSStore(t *testing.T) {
	testenv.RequireRoot(t)
	dir := filepath.Join(t.TempDir(), "store")
	store := openStoreAt(t, dir, layout.Options{Driver: layout.VFS})
	p := &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t)}}
	app := mustPublish(t, p, fixtures.ref("app:1"), "localhost/cargotest/app:1")
	res := mustPublish(t, p, writeSchema1Dir(t), "localhost/cargotest/schema1:1")
	if res.Action != Added || res.LayersFetched != 0 {
		t.Errorf("publish: %s with %d layers committed; want added with none", res.Action, res.LayersFetched)
	}
	snap, err := layout.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(fixtures.written["app:1"].Layers); len(snap.Layers) != n {
		t.Errorf("the store has %d layers; want app:1's %d", len(snap.Layers), n)
	}
	appImg, _ := store.Image(app.ImageID)
	if old, _ := store.Image(res.ImageID); old.TopLayer != appImg.TopLayer {
		t.Errorf("the schema 1 image's top layer is %q, app:1's %q", old.TopLayer, appImg.TopLayer)
	}
	if err := testimage.VerifyStore(dir, "vfs"); err != nil {
		t.Fatalf("the storage library (vfs) does not accept the store: %v", err)
	}
}
