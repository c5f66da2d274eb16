package builder

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.podman.io/image/v5/manifest"
)

// writeSchema1Dir writes app:1's layers as a Docker schema 1 image in the image library's dir:
// layout (a schema 1 manifest cannot live in an OCI layout) and returns its reference.
func writeSchema1Dir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	w := fixtures.written["app:1"]
	var fsLayers []manifest.Schema1FSLayers
	var history []manifest.Schema1History
	for i, l := range slices.Backward(w.Layers) { // schema 1 lists the top layer first
		data, err := os.ReadFile(blobPath(filepath.Join(fixtures.dir, "app"), l.Digest))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, l.Digest.Encoded()), data, 0o644); err != nil {
			t.Fatal(err)
		}
		compat := map[string]any{"id": fmt.Sprintf("%064x", i+1), "created": time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)}
		if i > 0 {
			compat["parent"] = fmt.Sprintf("%064x", i)
		}
		if i == len(w.Layers)-1 {
			compat["architecture"], compat["os"] = "amd64", "linux"
		}
		v1, err := json.Marshal(compat)
		if err != nil {
			t.Fatal(err)
		}
		fsLayers = append(fsLayers, manifest.Schema1FSLayers{BlobSum: l.Digest})
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

// A Docker schema 1 image is refused before anything is fetched, with a way out.
func TestSchema1IsRefusedWithAWayOut(t *testing.T) {
	requireRoot(t)
	ref := writeSchema1Dir(t)
	store, _ := openStore(t)
	p := &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t)}}
	res := publish(t, p, ref, "localhost/cargotest/schema1:1")
	if res.Err == nil || !strings.Contains(res.Err.Error(), "schema 1") || !strings.Contains(res.Err.Error(), "skopeo copy --format v2s2") {
		t.Errorf("publish of a schema 1 image: %v; want a refusal saying schema 1 and how to convert it", res.Err)
	}
	if res.LayersFetched != 0 || len(store.Images()) != 0 {
		t.Errorf("%d layers fetched, %d images; want nothing", res.LayersFetched, len(store.Images()))
	}
}
