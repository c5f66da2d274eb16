package layout

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/storage"
)

func TestBigDataFileName(t *testing.T) {
	for key, want := range map[string]string{
		"manifest":               "manifest",
		"signatures":             "signatures",
		"a.b.9":                  "a.b.9",
		"sha256:abc":             "=" + base64.StdEncoding.EncodeToString([]byte("sha256:abc")),
		"manifest-sha256:abc":    "=" + base64.StdEncoding.EncodeToString([]byte("manifest-sha256:abc")),
		"Manifest":               "=" + base64.StdEncoding.EncodeToString([]byte("Manifest")),
		"../x":                   "=" + base64.StdEncoding.EncodeToString([]byte("../x")),
		"signature-0123456789ab": "=" + base64.StdEncoding.EncodeToString([]byte("signature-0123456789ab")),
	} {
		t.Run(key, func(t *testing.T) {
			if got := bigDataFileName(key); got != want {
				t.Errorf("bigDataFileName(%q) = %q, want %q", key, got, want)
			}
		})
	}
}

func TestPutImage(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	base := commitTestLayer(t, s, "", baseEntries)
	child := commitTestLayer(t, s, base.meta.ID, childEntries)
	img := testImageMeta(t, []testLayer{base, child}, []string{"example.com/app:1", "example.com/app:latest"}, "one")
	if !putImage(t, s, img) {
		t.Fatal("PutImage of a new image reported no change")
	}

	assertBigDataFiles(t, filepath.Join(dir, "overlay-images", img.ID), img)
	assertImageRecord(t, dir, img, child.meta.ID)
	if r, ok := s.Image(img.ID); !ok || r.TopLayer != child.meta.ID {
		t.Error("Image did not find the image")
	}
}

// assertBigDataFiles checks the files of img's big data in imgDir: names, contents and modes.
func assertBigDataFiles(t *testing.T, imgDir string, img imageMeta) {
	t.Helper()
	assertMode(t, imgDir, 0o755)
	for _, b := range img.BigData {
		name := "=" + base64.StdEncoding.EncodeToString([]byte(b.Key))
		if b.Key == "manifest" {
			name = "manifest"
		}
		p := filepath.Join(imgDir, name)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("big data %q: %v", b.Key, err)
		}
		if string(data) != string(b.Data) {
			t.Errorf("big data %q: wrong content", b.Key)
		}
		assertMode(t, p, 0o644)
	}
	if entries, _ := os.ReadDir(imgDir); len(entries) != 3 {
		t.Errorf("%s has %d files, want 3", imgDir, len(entries))
	}

}

// assertImageRecord checks images.json's only record against img (with top layer top), field by field.
func assertImageRecord(t *testing.T, dir string, img imageMeta, top string) {
	t.Helper()
	var raw []map[string]json.RawMessage
	readJSONFile(t, filepath.Join(dir, "overlay-images", "images.json"), &raw)
	if len(raw) != 1 {
		t.Fatalf("images.json has %d records", len(raw))
	}
	for _, key := range []string{"id", "digest", "names", "names-history", "layer", "metadata", "big-data-names", "big-data-sizes", "big-data-digests", "created"} {
		if _, ok := raw[0][key]; !ok {
			t.Errorf("images.json record lacks %q", key)
		}
	}
	var images []storage.Image
	readJSONFile(t, filepath.Join(dir, "overlay-images", "images.json"), &images)
	got := images[0]
	if got.ID != img.ID || got.Digest != img.Digest || got.TopLayer != top || got.Metadata != img.Metadata || !got.Created.Equal(img.Created) {
		t.Errorf("record %+v does not match %+v", got, img)
	}
	if !slices.Equal(got.Names, img.Names) {
		t.Errorf("names %v, want %v", got.Names, img.Names)
	}
	// As the storage library's AddNames: each name pushed to the front in turn.
	if want := []string{"example.com/app:latest", "example.com/app:1"}; !slices.Equal(got.NamesHistory, want) {
		t.Errorf("names-history %v, want %v", got.NamesHistory, want)
	}
	wantKeys := []string{img.BigData[0].Key, img.BigData[1].Key, "manifest"}
	if !slices.Equal(got.BigDataNames, wantKeys) {
		t.Errorf("big-data-names %v, want %v", got.BigDataNames, wantKeys)
	}
	for _, b := range img.BigData {
		if got.BigDataSizes[b.Key] != int64(len(b.Data)) {
			t.Errorf("big-data-sizes[%q] = %d, want %d", b.Key, got.BigDataSizes[b.Key], len(b.Data))
		}
		want := digest.Canonical.FromBytes(b.Data)
		if got.BigDataDigests[b.Key] != want {
			t.Errorf("big-data-digests[%q] = %s, want %s", b.Key, got.BigDataDigests[b.Key], want)
		}
	}
	if got.BigDataDigests["manifest"] != img.Digest {
		t.Errorf("manifest big data digest %s, want the manifest digest %s", got.BigDataDigests["manifest"], img.Digest)
	}

}

func TestPutImageTwiceIsNoop(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	base := commitTestLayer(t, s, "", baseEntries)
	img := testImageMeta(t, []testLayer{base}, []string{"example.com/app:1"}, "one")
	putImage(t, s, img)

	var files []string
	_ = filepath.WalkDir(filepath.Join(dir, "overlay-images"), func(p string, d os.DirEntry, err error) error {
		if err == nil {
			files = append(files, p)
		}
		return err
	})
	files = append(files, filepath.Join(dir, "overlay-layers", "layers.json"))
	stat := func() map[string]string {
		res := map[string]string{}
		for _, p := range files {
			fi, err := os.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			data := ""
			if fi.Mode().IsRegular() {
				b, _ := os.ReadFile(p)
				data = string(b)
			}
			res[p] = fi.ModTime().Format(time.RFC3339Nano) + " " + data
		}
		return res
	}
	before := stat()
	time.Sleep(10 * time.Millisecond) // so that a rewrite would show in mtimes at any timestamp granularity

	if putImage(t, s, img) {
		t.Error("second PutImage of the same image reported a change")
	}
	// Also across a reopen, as a second cargohold run would see it.
	closeStore(t, s)
	s = openStore(t, dir)
	if putImage(t, s, img) {
		t.Error("PutImage after reopening reported a change")
	}
	after := stat()
	for p, b := range before {
		if after[p] != b {
			t.Errorf("%s changed by a no-op PutImage", p)
		}
	}
}

func TestNameMovesBetweenImages(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	base := commitTestLayer(t, s, "", baseEntries)
	child := commitTestLayer(t, s, base.meta.ID, childEntries)
	one := testImageMeta(t, []testLayer{base}, []string{"example.com/app:1", "example.com/app:latest"}, "one")
	two := testImageMeta(t, []testLayer{base, child}, []string{"example.com/app:2", "example.com/app:latest"}, "two")
	putImage(t, s, one)
	putImage(t, s, two)

	var images []storage.Image
	readJSONFile(t, filepath.Join(dir, "overlay-images", "images.json"), &images)
	if len(images) != 2 {
		t.Fatalf("%d images, want 2", len(images))
	}
	owner := map[string]string{}
	for _, img := range images {
		for _, n := range img.Names {
			if o, dup := owner[n]; dup {
				t.Errorf("name %q on images %s and %s", n, o, img.ID)
			}
			owner[n] = img.ID
		}
	}
	if owner["example.com/app:latest"] != two.ID || owner["example.com/app:1"] != one.ID || owner["example.com/app:2"] != two.ID {
		t.Errorf("names after the move: %v", owner)
	}
	if !slices.Contains(images[0].NamesHistory, "example.com/app:latest") {
		t.Error("the old image's names-history lost the moved name")
	}

	// Moving one of its names away leaves an image its other names.
	three := testImageMeta(t, []testLayer{base, child}, []string{"example.com/app:2"}, "three")
	putImage(t, s, three)
	r, ok := s.Image(two.ID)
	if !ok || !slices.Equal(r.Names, []string{"example.com/app:latest"}) {
		t.Errorf("image two now has names %v", r.Names)
	}

	// Re-tagging an existing image puts the new name first.
	one.Names = []string{"example.com/app:stable"}
	if !putImage(t, s, one) {
		t.Error("adding a name reported no change")
	}
	r, _ = s.Image(one.ID)
	if want := []string{"example.com/app:stable", "example.com/app:1"}; !slices.Equal(r.Names, want) {
		t.Errorf("names %v, want %v", r.Names, want)
	}
	if r.NamesHistory[0] != "example.com/app:1" || r.NamesHistory[1] != "example.com/app:stable" {
		t.Errorf("names-history %v", r.NamesHistory)
	}
}

// A store that somehow has a duplicate name (e.g. written by an older tool) is repaired by the next
// PutImage the way the storage library repairs a writable store: the later image keeps the name.
func TestPutImageRepairsDuplicateNames(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	base := commitTestLayer(t, s, "", baseEntries)
	child := commitTestLayer(t, s, base.meta.ID, childEntries)
	one := testImageMeta(t, []testLayer{base}, []string{"example.com/a:1"}, "one")
	two := testImageMeta(t, []testLayer{base, child}, []string{"example.com/b:1"}, "two")
	putImage(t, s, one)
	putImage(t, s, two)
	damaged := s.Images()
	damaged[0].Names = append(damaged[0].Names, "example.com/b:1") // the damage
	s.setImages(damaged, nil)
	if rec, ok := s.ImageWithManifest("", two.Digest, []string{"example.com/b:1"}); !ok || rec.ID != two.ID {
		t.Errorf("ImageWithManifest of the image holding a damaged name: %s, %v; want %s", rec.ID, ok, two.ID)
	}

	putImage(t, s, testImageMeta(t, []testLayer{base}, []string{"example.com/c:1"}, "three"))
	var images []storage.Image
	readJSONFile(t, filepath.Join(dir, "overlay-images", "images.json"), &images)
	if !slices.Equal(images[0].Names, []string{"example.com/a:1"}) || !slices.Equal(images[1].Names, []string{"example.com/b:1"}) {
		t.Errorf("names after repair: %v / %v", images[0].Names, images[1].Names)
	}
}

func TestPutImageUpdatesBigData(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	base := commitTestLayer(t, s, "", baseEntries)
	img := testImageMeta(t, []testLayer{base}, []string{"example.com/app:1"}, "one")
	putImage(t, s, img)

	// The same config reached through another manifest (say, a recompressed copy of the image).
	other := img
	otherManifest := []byte(strings.Replace(string(img.BigData[2].Data), `"schemaVersion":2`, `"schemaVersion":2,"annotations":{"x":"y"}`, 1))
	otherDigest := digest.Canonical.FromBytes(otherManifest)
	other.Digest = otherDigest
	other.BigData = []bigData{
		img.BigData[0],
		{Key: "manifest-" + otherDigest.String(), Data: otherManifest},
		{Key: "manifest", Data: otherManifest},
	}
	if !putImage(t, s, other) {
		t.Fatal("new manifest reported no change")
	}
	r, _ := s.Image(img.ID)
	if r.Digest != img.Digest {
		t.Errorf("digest changed to %s; the storage library keeps the first", r.Digest)
	}
	if len(r.BigDataNames) != 4 || r.BigDataDigests["manifest"] != otherDigest || r.BigDataSizes["manifest"] != int64(len(otherManifest)) {
		t.Errorf("big data after update: %v %v %v", r.BigDataNames, r.BigDataDigests, r.BigDataSizes)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "overlay-images", img.ID, "manifest"))
	if string(data) != string(otherManifest) {
		t.Error("manifest file not updated")
	}
}

func TestPutImageRejectsBadInput(t *testing.T) {
	s := openStore(t, t.TempDir())
	base := commitTestLayer(t, s, "", baseEntries)
	good := testImageMeta(t, []testLayer{base}, []string{"example.com/app:1"}, "one")
	for name, mutate := range map[string]func(m *imageMeta){
		"unknown top layer":    func(m *imageMeta) { m.TopLayer = strings.Repeat("b", 64) },
		"ID not hex":           func(m *imageMeta) { m.ID = "../x" },
		"empty name":           func(m *imageMeta) { m.Names = []string{""} },
		"config digest":        func(m *imageMeta) { m.BigData[0].Data = []byte("{}") },
		"manifest-key digest":  func(m *imageMeta) { m.BigData[1].Data = []byte("{}") },
		"duplicate key":        func(m *imageMeta) { m.BigData = append(m.BigData, m.BigData[2]) },
		"empty key":            func(m *imageMeta) { m.BigData[0].Key = "" },
		"invalid image digest": func(m *imageMeta) { m.Digest = "sha256:nothex" },
	} {
		t.Run(name, func(t *testing.T) {
			m := good
			m.BigData = slices.Clone(good.BigData)
			mutate(&m)
			if _, err := s.putImage(m); err == nil {
				t.Errorf("%s: PutImage succeeded", name)
			}
		})
	}
	if len(s.Images()) != 0 {
		t.Error("a rejected image was recorded")
	}

	putImage(t, s, good)
	child := commitTestLayer(t, s, base.meta.ID, childEntries)
	moved := good
	moved.TopLayer = child.meta.ID
	if _, err := s.putImage(moved); err == nil {
		t.Error("PutImage changed the top layer of an existing image")
	}
}

// imageOf turns a test image record back into what a publish passes to PutImage.
func imageOf(m imageMeta, source string) Image {
	return Image{Config: m.BigData[0].Data, Manifest: m.BigData[2].Data, Names: m.Names, Source: source}
}

// PutImage derives the whole record from the image: ID, top layer, creation date, the big-data keys
// Podman looks up (the storage library's own constants) and cargohold's metadata.
func TestPutImageDerivesRecord(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	base := commitTestLayer(t, s, "", baseEntries)
	child := commitTestLayer(t, s, base.meta.ID, childEntries)
	want := testImageMeta(t, []testLayer{base, child}, []string{"example.com/app:1"}, "one")
	list := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`)
	img := imageOf(want, "docker://example.com/app:1")
	img.List = list
	if changed, err := s.PutImage(img); err != nil || !changed {
		t.Fatalf("PutImage: %v, %v", changed, err)
	}
	got, ok := s.Image(want.ID)
	if !ok {
		t.Fatalf("no image %s", want.ID)
	}
	listDigest := digest.Canonical.FromBytes(list)
	if got.TopLayer != child.meta.ID || got.Digest != want.Digest || !got.Created.Equal(want.Created) {
		t.Errorf("record %+v, want top layer %s, digest %s, created %s", got, child.meta.ID, want.Digest, want.Created)
	}
	wantKeys := []string{"sha256:" + want.ID, storage.ImageDigestManifestBigDataNamePrefix + "-" + want.Digest.String(),
		storage.ImageDigestBigDataKey, storage.ImageDigestManifestBigDataNamePrefix + "-" + listDigest.String()}
	if !slices.Equal(got.BigDataNames, wantKeys) {
		t.Errorf("big data %v, want %v", got.BigDataNames, wantKeys)
	}
	snap, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	info, err := snap.Info(got)
	if err != nil || info.Source != "docker://example.com/app:1" || info.Published == nil {
		t.Errorf("info %+v, %v: want the source and publication time recorded", info, err)
	}
	for _, l := range info.Layers {
		if want := filepath.Join(dir, "overlay", l.ID, "diff"); l.Dir != want {
			t.Errorf("layer %s: dir %s, want %s", l.ID, l.Dir, want)
		}
	}
	if !s.HasManifest(want.ID, listDigest, []string{"example.com/app:1"}) || s.HasManifest("", listDigest, []string{"example.com/app:2"}) {
		t.Error("HasManifest does not find the image by its list digest and names only")
	}
	if rec, ok := s.ImageWithManifest("", want.Digest, []string{"example.com/app:1"}); !ok || rec.ID != want.ID {
		t.Errorf("ImageWithManifest by manifest digest and name: %s, %v; want %s", rec.ID, ok, want.ID)
	}

	// A later publish under another name keeps the first record's metadata.
	img.Names, img.Source = []string{"example.com/app:stable"}, "docker://example.com/app:stable"
	if _, err := s.PutImage(img); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.Image(want.ID); again.Metadata != got.Metadata {
		t.Errorf("metadata rewritten: %s, want %s", again.Metadata, got.Metadata)
	}
}

// A store that already holds unnamed images (left by an earlier version) loses them at the next gc.
func TestGCRemovesNamelessImages(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	base := commitTestLayer(t, s, "", baseEntries)
	child := commitTestLayer(t, s, base.meta.ID, childEntries)
	named := testImageMeta(t, []testLayer{base}, []string{"example.com/app:1"}, "named")
	nameless := testImageMeta(t, []testLayer{base, child}, []string{"example.com/gone:1"}, "nameless")
	putImage(t, s, named)
	putImage(t, s, nameless)
	closeStore(t, s)
	editFile(t, filepath.Join(dir, "overlay-images", "images.json"), `"names":["example.com/gone:1"],`, "")

	s = openStore(t, dir)
	dry, err := s.GC(t.Context(), time.Hour, time.Now(), true)
	if err != nil || !slices.Equal(dry.RemovedImages, []string{nameless.ID}) || len(s.Images()) != 2 {
		t.Fatalf("dry run: %+v, %v, %d images; want the nameless image reported, nothing removed", dry, err, len(s.Images()))
	}
	report, err := s.GC(t.Context(), time.Hour, time.Now(), false)
	if err != nil || !slices.Equal(report.RemovedImages, []string{nameless.ID}) {
		t.Fatalf("gc: %+v, %v", report, err)
	}
	if _, ok := s.Image(nameless.ID); ok {
		t.Error("the nameless image is still recorded")
	}
	if _, waiting := report.Waiting[child.meta.ID]; !waiting {
		t.Errorf("its layer is not in its grace period: %+v", report)
	}
	closeStore(t, s)
	snap, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range snap.Images {
		if len(img.Names) == 0 {
			t.Errorf("ls would show <none> for %s", img.ID)
		}
	}
}
