package builder

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cargohold/cargohold/internal/testimage"
	"github.com/cargohold/cargohold/layout"
	"github.com/cargohold/cargohold/layout/podmancheck"
	"github.com/opencontainers/go-digest"
)

// These tests publish OCI layouts written by testimage (no registry needed: the oci: transport goes
// through the same resolve/fetch/unpack path as docker://) and read the store back with the storage
// library, as Podman would. The end-to-end suite (scripts/e2e) does the same through a registry and
// real Podman.

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("publishing writes device nodes, ownership and trusted.* xattrs: run the tests as root")
		}
		t.Skip("needs root (device nodes, ownership, trusted.* xattrs); CI runs it as root")
	}
}

// fakeBusybox stands in for the binary: these tests never run the image.
var fakeBusybox = []byte("#!/bin/sh\necho not really busybox\n")

type fixtureSet struct {
	dir     string
	written map[string]testimage.Written // by "name:tag"
}

func writeFixtures(t *testing.T) fixtureSet {
	t.Helper()
	fs := fixtureSet{dir: t.TempDir(), written: map[string]testimage.Written{}}
	for _, f := range testimage.Fixtures(fakeBusybox) {
		w, err := testimage.WriteLayout(filepath.Join(fs.dir, f.Name), f.Tag, f.Image)
		if err != nil {
			t.Fatal(err)
		}
		fs.written[f.Ref()] = w
	}
	return fs
}

func (fs fixtureSet) ref(nameTag string) string {
	name, tag, _ := strings.Cut(nameTag, ":")
	return "oci:" + filepath.Join(fs.dir, name) + ":" + tag
}

func acceptAnythingPolicy(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(path, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func openStore(t *testing.T) (*layout.Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	s, err := layout.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

func publish(t *testing.T, p *Publisher, ref string, names ...string) Result {
	t.Helper()
	return p.Publish(context.Background(), Request{Ref: ref, Names: names})
}

func mustPublish(t *testing.T, p *Publisher, ref string, names ...string) Result {
	t.Helper()
	res := publish(t, p, ref, names...)
	if res.Err != nil {
		t.Fatalf("publish %s: %v", ref, res.Err)
	}
	return res
}

func layerIDs(t *testing.T, storeDir string) []string {
	t.Helper()
	var layers []struct {
		ID string `json:"id"`
	}
	readJSON(t, filepath.Join(storeDir, "overlay-layers", "layers.json"), &layers)
	var ids []string
	for _, l := range layers {
		ids = append(ids, l.ID)
	}
	return ids
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestPublishEveryCompressionAndReadBackAsPodman(t *testing.T) {
	requireRoot(t)
	fx := writeFixtures(t)
	store, dir := openStore(t)
	p := &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t)}}

	for _, nt := range []string{"app:1", "app-zstd:1", "plain:1", "other:1"} {
		res := mustPublish(t, p, fx.ref(nt), "localhost/cargotest/"+nt)
		w := fx.written[nt]
		if res.Action != Added || res.ImageID != w.Config.Encoded() || res.ManifestDigest != w.Manifest {
			t.Errorf("%s: got %+v, want added image %s manifest %s", nt, res, w.Config.Encoded(), w.Manifest)
		}
	}
	if err := podmancheck.Verify(dir); err != nil {
		t.Fatalf("the storage library does not accept the store: %v", err)
	}

	// other:1 shares app:1's base blob: stored once, and not fetched again.
	base := fx.written["app:1"].Layers[0].DiffID.Encoded()
	if n := countOf(layerIDs(t, dir), base); n != 1 {
		t.Errorf("shared base layer %s is recorded %d times", base, n)
	}
	// Each compressed variant of layers 2 and 3 has its own diff ID (it names its compression),
	// so 1 base + 3×2 app layers + 1 other layer.
	if got := len(layerIDs(t, dir)); got != 8 {
		t.Errorf("layers.json has %d layers, want 8", got)
	}
}

func TestPublishTwiceIsANoOp(t *testing.T) {
	requireRoot(t)
	fx := writeFixtures(t)
	store, dir := openStore(t)
	p := &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t)}}
	mustPublish(t, p, fx.ref("other:1"), "localhost/cargotest/other:1")
	images := filepath.Join(dir, "overlay-images", "images.json")
	before, _ := os.ReadFile(images)

	res := mustPublish(t, p, fx.ref("other:1"), "localhost/cargotest/other:1")
	if res.Action != Unchanged || res.LayersFetched != 0 {
		t.Errorf("second publish: %+v, want unchanged with nothing fetched", res)
	}
	after, _ := os.ReadFile(images)
	if !bytes.Equal(before, after) {
		t.Error("images.json changed on a no-op publish")
	}
}

func TestNewTagMovesTheName(t *testing.T) {
	requireRoot(t)
	fx := writeFixtures(t)
	store, dir := openStore(t)
	p := &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t)}}
	const latest = "localhost/cargotest/app:latest"
	mustPublish(t, p, fx.ref("other:1"), latest)
	res := mustPublish(t, p, fx.ref("app:2"), latest)
	if res.Action != Added {
		t.Errorf("got %s", res.Action)
	}

	holders := 0
	var images []struct {
		ID    string   `json:"id"`
		Names []string `json:"names"`
	}
	readJSON(t, filepath.Join(dir, "overlay-images", "images.json"), &images)
	for _, img := range images {
		if slices.Contains(img.Names, latest) {
			holders++
			if img.ID != fx.written["app:2"].Config.Encoded() {
				t.Errorf("%s is on image %s, want app:2's", latest, img.ID)
			}
		}
	}
	if holders != 1 {
		t.Errorf("%s is held by %d images, want exactly 1", latest, holders)
	}
	if err := podmancheck.Verify(dir); err != nil {
		t.Fatal(err)
	}
}

func TestBadImagesLeaveTheStoreAsItWas(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name   string
		break_ func(t *testing.T, layoutDir string, w testimage.Written)
		want   string
	}{
		{"corrupt layer blob", func(t *testing.T, dir string, w testimage.Written) {
			blob := blobPath(dir, w.Layers[2].Digest)
			data, err := os.ReadFile(blob)
			if err != nil {
				t.Fatal(err)
			}
			data[len(data)/2] ^= 0xff
			if err := os.WriteFile(blob, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "sha256:"},
		{"missing layer blob", func(t *testing.T, dir string, w testimage.Written) {
			if err := os.Remove(blobPath(dir, w.Layers[1].Digest)); err != nil {
				t.Fatal(err)
			}
		}, "fetching layer " + "sha256:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := writeFixtures(t)
			store, dir := openStore(t)
			p := &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t)}}
			mustPublish(t, p, fx.ref("other:1"), "localhost/cargotest/other:1")
			imagesBefore, _ := os.ReadFile(filepath.Join(dir, "overlay-images", "images.json"))
			layersBefore := layerIDs(t, dir)

			tc.break_(t, filepath.Join(fx.dir, "app"), fx.written["app:1"])
			ref := fx.ref("app:1")
			res := publish(t, p, ref, "localhost/cargotest/app:1")
			if res.Err == nil || res.Action != Failed {
				t.Fatalf("publishing a broken image succeeded: %+v", res)
			}
			if msg := res.Err.Error(); !strings.Contains(msg, ref) || !strings.Contains(msg, tc.want) {
				t.Errorf("error %q should name the image %s and %q", msg, ref, tc.want)
			}
			imagesAfter, _ := os.ReadFile(filepath.Join(dir, "overlay-images", "images.json"))
			if !bytes.Equal(imagesBefore, imagesAfter) || !slices.Equal(layersBefore, layerIDs(t, dir)) {
				t.Error("a failed publish changed images.json or layers.json")
			}
			assertNoStrayLayerDirs(t, dir)
			if err := podmancheck.Verify(dir); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestTrustPolicyIsHonoured(t *testing.T) {
	requireRoot(t)
	fx := writeFixtures(t)
	store, dir := openStore(t)
	reject := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(reject, []byte(`{"default":[{"type":"reject"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &Publisher{Store: store, Options: Options{PolicyPath: reject}}
	res := publish(t, p, fx.ref("other:1"), "localhost/cargotest/other:1")
	if res.Err == nil || !strings.Contains(res.Err.Error(), "trust policy") {
		t.Fatalf("want a trust policy rejection, got %+v", res)
	}
	if ids := layerIDs(t, dir); len(ids) != 0 {
		t.Errorf("a rejected image left layers: %v", ids)
	}

	p.Options = Options{PolicyPath: reject, InsecurePolicy: true}
	mustPublish(t, p, fx.ref("other:1"), "localhost/cargotest/other:1")
}

func TestReferenceWithoutNameNeedsOne(t *testing.T) {
	requireRoot(t)
	fx := writeFixtures(t)
	store, _ := openStore(t)
	p := &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t)}}
	res := publish(t, p, fx.ref("other:1"))
	if res.Err == nil || !strings.Contains(res.Err.Error(), "give the image a name") {
		t.Fatalf("want a missing-name error, got %+v", res)
	}
}

func TestChainIDs(t *testing.T) {
	a := digest.FromString("a")
	b := digest.FromString("b")
	ids := chainIDs([]digest.Digest{a, b})
	if ids[0] != a.Encoded() {
		t.Errorf("base layer ID %s, want its diff ID hex", ids[0])
	}
	if want := digest.FromString(a.Encoded() + "+" + b.Encoded()).Encoded(); ids[1] != want {
		t.Errorf("child layer ID %s, want %s", ids[1], want)
	}
}

func blobPath(layoutDir string, d digest.Digest) string {
	return filepath.Join(layoutDir, "blobs", d.Algorithm().String(), d.Encoded())
}

// assertNoStrayLayerDirs checks that overlay/ holds only layers recorded in layers.json (and l/).
func assertNoStrayLayerDirs(t *testing.T, storeDir string) {
	t.Helper()
	recorded := layerIDs(t, storeDir)
	entries, err := os.ReadDir(filepath.Join(storeDir, "overlay"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "l" && !slices.Contains(recorded, e.Name()) {
			t.Errorf("overlay/%s is not a recorded layer (half-published?)", e.Name())
		}
	}
}

func countOf(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}
