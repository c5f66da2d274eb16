package builder

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cargohold/cargohold/internal/testenv"
	"github.com/cargohold/cargohold/internal/testimage"
	"github.com/cargohold/cargohold/layout"
	"github.com/opencontainers/go-digest"
	"go.podman.io/storage/pkg/reexec"
)

// These tests publish OCI layouts written by testimage (no registry needed: the oci: transport goes
// through the same resolve/fetch/unpack path as docker://) and read the store back with the storage
// library, as Podman would. The end-to-end suite (scripts/e2e) does the same through a registry and
// real Podman.

// fakeBusybox stands in for the binary: these tests never run the image.
var fakeBusybox = []byte("#!/bin/sh\necho not really busybox\n")

type fixtureSet struct {
	dir       string
	written   map[string]testimage.Written   // by "name:tag"
	platforms map[string][]testimage.Written // multi-platform fixtures, in index order
	indexes   map[string]digest.Digest
}

// fixtures are written once per test binary (the sparse 256 MiB files take a while); tests that
// damage a layout work on a copy (brokenCopy).
var fixtures fixtureSet

func TestMain(m *testing.M) {
	// The storage library's layer unpacking re-executes this binary (chrootarchive): the child
	// does its work here and exits (corpus_test.go pulls with the storage library).
	if reexec.Init() {
		return
	}
	dir, err := os.MkdirTemp("", "cargohold-builder-fixtures-")
	if err != nil {
		panic(err)
	}
	fixtures, err = writeFixtures(dir)
	if err != nil {
		_ = os.RemoveAll(dir) // the panic below reports what matters
		panic(err)
	}
	code := m.Run()
	if err := os.RemoveAll(dir); err != nil {
		fmt.Fprintln(os.Stderr, "removing the test fixtures:", err)
	}
	os.Exit(code)
}

func writeFixtures(dir string) (fixtureSet, error) {
	fs := fixtureSet{dir: dir, written: map[string]testimage.Written{},
		platforms: map[string][]testimage.Written{}, indexes: map[string]digest.Digest{}}
	for _, f := range testimage.Fixtures(fakeBusybox) {
		layoutDir := filepath.Join(fs.dir, f.Name)
		if len(f.Platforms) > 0 {
			ws, index, err := testimage.WriteMultiPlatform(layoutDir, f.Tag, f.Platforms)
			if err != nil {
				return fs, err
			}
			fs.platforms[f.Ref()], fs.indexes[f.Ref()] = ws, index
			continue
		}
		w, err := testimage.WriteLayout(layoutDir, f.Tag, f.Image)
		if err != nil {
			return fs, err
		}
		fs.written[f.Ref()] = w
	}
	return fs, nil
}

// brokenCopy copies the fixtures' layout of name into a fresh set that a test may damage.
func brokenCopy(t *testing.T, name string) fixtureSet {
	t.Helper()
	c := fixtures
	c.dir = t.TempDir()
	if err := os.CopyFS(filepath.Join(c.dir, name), os.DirFS(filepath.Join(fixtures.dir, name))); err != nil {
		t.Fatal(err)
	}
	return c
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

// openStore creates an overlay store in a new temp dir, as publish does; it is closed when the test ends.
func openStore(t *testing.T) (*layout.Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	return openStoreAt(t, dir, layout.Options{}), dir
}

// openStoreAt creates (as publish does, opts.Create) or opens the store at dir with opts; it is
// closed when the test ends.
func openStoreAt(t *testing.T, dir string, opts layout.Options) *layout.Store {
	t.Helper()
	opts.Create = true
	s, err := layout.OpenWithOptions(t.Context(), dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeStore(t, s) })
	return s
}

// closeStore closes a store the test opened; a lock it cannot release is a bug to report.
func closeStore(t *testing.T, s *layout.Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Error(err)
	}
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
	var ids []string
	for _, l := range storeView(t, storeDir).Layers {
		ids = append(ids, l.ID)
	}
	return ids
}

// storeView reads the store at dir as ls and inspect do.
func storeView(t *testing.T, dir string) *layout.Snapshot {
	t.Helper()
	s, err := layout.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// layerDirs are the directories holding the files of image id's layers, base first, as inspect
// reports them.
func layerDirs(t *testing.T, dir, id string) []string {
	t.Helper()
	snap := storeView(t, dir)
	img, err := snap.Find(id)
	if err != nil {
		t.Fatal(err)
	}
	info, err := snap.Info(img)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, l := range info.Layers {
		dirs = append(dirs, l.Dir)
	}
	return dirs
}

func TestPublishEveryCompressionAndReadBackAsPodman(t *testing.T) {
	testenv.RequireRoot(t)
	fx := fixtures
	store, dir := openStore(t)
	p := &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t)}}

	for _, nt := range []string{"app:1", "app-zstd:1", "plain:1", "other:1"} {
		res := mustPublish(t, p, fx.ref(nt), "localhost/cargotest/"+nt)
		w := fx.written[nt]
		if res.Action != Added || res.ImageID != w.Config.Encoded() || res.ManifestDigest != w.Manifest {
			t.Errorf("%s: got %+v, want added image %s manifest %s", nt, res, w.Config.Encoded(), w.Manifest)
		}
	}
	if err := testimage.VerifyStore(dir, "overlay"); err != nil {
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

func TestStoreDescribesWhatWasPublished(t *testing.T) {
	testenv.RequireRoot(t)
	fx := fixtures
	store, dir := openStore(t)
	p := &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t)}}
	before := time.Now().UTC()
	ref := fx.ref("app:1")
	res := mustPublish(t, p, ref, "localhost/cargotest/app:1")

	snap, err := layout.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	img, err := snap.Find("cargotest/app:1")
	if err != nil {
		t.Fatal(err)
	}
	info, err := snap.Info(img)
	if err != nil {
		t.Fatal(err)
	}
	w := fx.written["app:1"]
	if info.ID != res.ImageID || info.Digest != w.Manifest.String() || info.Platform != "linux/"+runtime.GOARCH || info.Source != ref {
		t.Errorf("info %+v: want id %s, digest %s, platform linux/%s, source %s", info, res.ImageID, w.Manifest, runtime.GOARCH, ref)
	}
	if info.Published == nil || info.Published.Before(before.Add(-time.Second)) {
		t.Errorf("published time %v, want about %v", info.Published, before)
	}
	var size int64
	for i, l := range w.Layers {
		size += l.DiffSize
		if info.Layers[i].DiffID != l.DiffID.String() || info.Layers[i].CompressedDigest != l.Digest.String() {
			t.Errorf("layer %d: %+v, want diff ID %s from %s", i, info.Layers[i], l.DiffID, l.Digest)
		}
	}
	if info.Size != size || len(info.Layers) != len(w.Layers) {
		t.Errorf("size %d in %d layers, want %d in %d", info.Size, len(info.Layers), size, len(w.Layers))
	}

	// A later publish that only adds a name keeps the first publish's record.
	mustPublish(t, p, ref, "localhost/cargotest/app:again")
	snap, _ = layout.Read(dir)
	img, _ = snap.Find("cargotest/app:again")
	again, _ := snap.Info(img)
	if again.Published == nil || !again.Published.Equal(*info.Published) {
		t.Errorf("published time changed from %v to %v", info.Published, again.Published)
	}
	if _, err := snap.Find("nothing:here"); err == nil {
		t.Error("Find of a missing image succeeded")
	}
}

func TestPublishTwiceIsANoOp(t *testing.T) {
	testenv.RequireRoot(t)
	fx := fixtures
	store, dir := openStore(t)
	p := &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t)}}
	mustPublish(t, p, fx.ref("other:1"), "localhost/cargotest/other:1")
	before, err := testimage.TreeState(dir)
	if err != nil {
		t.Fatal(err)
	}

	res := mustPublish(t, p, fx.ref("other:1"), "localhost/cargotest/other:1")
	if res.Action != Unchanged || res.LayersFetched != 0 {
		t.Errorf("second publish: %+v, want unchanged with nothing fetched", res)
	}
	after, err := testimage.TreeState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diffs := testimage.DiffTrees(before, after); len(diffs) > 0 {
		t.Errorf("a no-op publish changed the store:\n%s", strings.Join(diffs, "\n"))
	}
}

func TestNewTagMovesTheName(t *testing.T) {
	testenv.RequireRoot(t)
	fx := fixtures
	store, dir := openStore(t)
	p := &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t)}}
	const latest = "localhost/cargotest/app:latest"
	mustPublish(t, p, fx.ref("other:1"), latest)
	res := mustPublish(t, p, fx.ref("app:2"), latest)
	if res.Action != Added {
		t.Errorf("got %s", res.Action)
	}

	holders := 0
	for _, img := range storeView(t, dir).Images {
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
	if err := testimage.VerifyStore(dir, "overlay"); err != nil {
		t.Fatal(err)
	}
}

func TestBadImagesLeaveTheStoreAsItWas(t *testing.T) {
	testenv.RequireRoot(t)
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
			fx := brokenCopy(t, "app")
			store, dir := openStore(t)
			p := &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t)}}
			mustPublish(t, p, fixtures.ref("other:1"), "localhost/cargotest/other:1")
			imagesBefore := storeView(t, dir).Images
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
			if !reflect.DeepEqual(imagesBefore, storeView(t, dir).Images) || !slices.Equal(layersBefore, layerIDs(t, dir)) {
				t.Error("a failed publish changed the store's images or layers")
			}
			assertNoStrayLayerDirs(t, dir)
			if err := testimage.VerifyStore(dir, "overlay"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestPlatformIsPickedFromAnIndex(t *testing.T) {
	testenv.RequireRoot(t)
	fx := fixtures
	store, dir := openStore(t)
	policy := acceptAnythingPolicy(t)
	variants := fx.platforms["multi:1"]
	for i, platform := range []string{"linux/amd64", "linux/arm64"} {
		p := &Publisher{Store: store, Options: Options{PolicyPath: policy, Platform: platform}}
		name := "localhost/cargotest/multi:" + strings.ReplaceAll(platform, "/", "-")
		res := mustPublish(t, p, fx.ref("multi:1"), name)
		if res.ImageID != variants[i].Config.Encoded() || res.ManifestDigest != variants[i].Manifest {
			t.Errorf("%s: published image %s (manifest %s), want %s (%s)", platform, res.ImageID,
				res.ManifestDigest, variants[i].Config.Encoded(), variants[i].Manifest)
		}
		if !store.HasManifest(res.ImageID, fx.indexes["multi:1"], nil) {
			img, _ := store.Image(res.ImageID)
			t.Errorf("%s: the image index is not kept with the image (big data %v)", platform, img.BigDataNames)
		}
	}
	// No --platform: the host's, as podman pull does.
	p := &Publisher{Store: store, Options: Options{PolicyPath: policy}}
	res := mustPublish(t, p, fx.ref("multi:1"), "localhost/cargotest/multi:host")
	want := variants[0]
	if runtime.GOARCH == "arm64" {
		want = variants[1]
	}
	if res.ImageID != want.Config.Encoded() {
		t.Errorf("default platform picked %s, want the host's (%s) %s", res.ImageID, runtime.GOARCH, want.Config.Encoded())
	}
	bad := &Publisher{Store: store, Options: Options{PolicyPath: policy, Platform: "linux/s390x"}}
	res = publish(t, bad, fx.ref("multi:1"), "localhost/cargotest/multi:s390x")
	if res.Err == nil {
		t.Error("a platform the index lacks was published")
	} else if msg := res.Err.Error(); !strings.Contains(msg, "no linux/s390x image (it has linux/amd64, linux/arm64)") {
		t.Errorf("error %q does not say what was wanted and what the index has", msg)
	}
	if err := testimage.VerifyStore(dir, "overlay"); err != nil {
		t.Fatal(err)
	}
}

// A single-platform image of another architecture fails (it would land in that architecture's store
// under a name nodes of that architecture run); the store is left as it was.
func TestSinglePlatformImageOfAnotherPlatformFails(t *testing.T) {
	testenv.RequireRoot(t)
	store, _ := openStore(t)
	other := "linux/arm64"
	if runtime.GOARCH == "arm64" {
		other = "linux/amd64"
	}
	p := &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t), Platform: other}}
	res := publish(t, p, fixtures.ref("hello:1"), "localhost/cargotest/hello:other")
	if res.Err == nil {
		t.Fatalf("a linux/%s image was published for %s", runtime.GOARCH, other)
	}
	want := fmt.Sprintf("the image is linux/%s, not the wanted %s", runtime.GOARCH, other)
	if msg := res.Err.Error(); !strings.Contains(msg, want) || !strings.Contains(msg, "hello") {
		t.Errorf("error %q: want the image, %q", msg, want)
	}
	if n := len(store.Images()); n != 0 {
		t.Errorf("the store holds %d images after the refusal", n)
	}
	// The image's own platform, named explicitly, is accepted.
	p.Options.Platform = "linux/" + runtime.GOARCH
	mustPublish(t, p, fixtures.ref("hello:1"), "localhost/cargotest/hello:own")
}

func TestTrustPolicyIsHonoured(t *testing.T) {
	testenv.RequireRoot(t)
	fx := fixtures
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
	testenv.RequireRoot(t)
	fx := fixtures
	store, _ := openStore(t)
	p := &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t)}}
	res := publish(t, p, fx.ref("other:1"))
	if res.Err == nil || !strings.Contains(res.Err.Error(), "give the image a name") {
		t.Fatalf("want a missing-name error, got %+v", res)
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
