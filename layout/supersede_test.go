package layout

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.podman.io/storage"
)

// versions is a store holding example.com/app:stable (v1: base + own1) and v2 (base + own2) ready to
// take the tag, with a clock the test moves.
type versions struct {
	dir              string
	s                *Store
	now              time.Time
	base, own1, own2 testLayer
	v1, v2           imageMeta
}

const stable = "example.com/app:stable"

func newVersions(t *testing.T) *versions {
	t.Helper()
	v := &versions{dir: t.TempDir(), now: time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)}
	v.s = openStore(t, v.dir)
	v.s.now = func() time.Time { return v.now }
	v.base = commitTestLayer(t, v.s, "", baseEntries)
	v.own1 = commitTestLayer(t, v.s, v.base.meta.ID, childEntries)
	v.own2 = commitTestLayer(t, v.s, v.base.meta.ID, grandchildEntries)
	v.v1 = testImageMeta(t, []testLayer{v.base, v.own1}, []string{stable}, "v1")
	v.v2 = testImageMeta(t, []testLayer{v.base, v.own2}, []string{stable}, "v2")
	putImage(t, v.s, v.v1)
	return v
}

// digested is the name a superseded image of example.com/app is kept under.
func digested(m imageMeta) string { return "example.com/app@" + m.Digest.String() }

// image returns the record of id, failing the test when there is none.
func (v *versions) image(t *testing.T, id string) storage.Image {
	t.Helper()
	img, ok := v.s.Image(id)
	if !ok {
		t.Fatalf("image %s is not recorded", id)
	}
	return img
}

// info is what ls shows about image id.
func (v *versions) info(t *testing.T, id string) ImageInfo {
	t.Helper()
	snap, err := Read(v.dir)
	if err != nil {
		t.Fatal(err)
	}
	img, err := snap.Find(id)
	if err != nil {
		t.Fatal(err)
	}
	info, err := snap.Info(img)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// checkClean asserts that the store reads as Podman reads it, without a problem or leftover.
func checkClean(t *testing.T, dir string) {
	t.Helper()
	r, err := Check(t.Context(), dir, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || len(r.Leftovers) > 0 {
		t.Errorf("check: problems %+v, leftovers %+v", r.Problems, r.Leftovers)
	}
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

// A tag moved to another image leaves the old image superseded: its record stays, under its digested
// name (never nameless), with its big data and layers, so containers running from it keep working.
func TestMovedTagSupersedesOldImage(t *testing.T) {
	v := newVersions(t)
	if _, err := v.s.PutImage(imageOf(v.v2, "")); err != nil {
		t.Fatal(err)
	}
	old := v.image(t, v.v1.ID)
	if !slices.Equal(old.Names, []string{digested(v.v1)}) {
		t.Errorf("the old image's names are %v, want only its digested name %s", old.Names, digested(v.v1))
	}
	if cur := v.image(t, v.v2.ID); !slices.Equal(cur.Names, []string{stable}) {
		t.Errorf("the new image's names are %v, want [%s]", cur.Names, stable)
	}
	if info := v.info(t, v.v1.ID); info.Superseded == nil || !info.Superseded.Equal(v.now) {
		t.Errorf("ls shows the old image superseded at %v, want %v", info.Superseded, v.now)
	}
	if info := v.info(t, v.v2.ID); info.Superseded != nil {
		t.Errorf("the current image shows as superseded at %v", info.Superseded)
	}
	if !exists(filepath.Join(v.dir, "overlay-images", v.v1.ID)) || !v.s.HasLayer(v.own1.meta.ID) {
		t.Error("the superseded image's big data or own layer went")
	}
	if extra := v.s.NamesExcept([]string{stable}); len(extra) != 0 {
		t.Errorf("a recipe listing %s would see extra names %v: digested names are cargohold's own", stable, extra)
	}
	closeStore(t, v.s)
	checkClean(t, v.dir) // Podman's library finds the image by its digested name and by its ID
}

// rm of an image's last name, or of the image by ID, supersedes it too; rm of one of several names
// only untags; rm of a superseded image leaves it as it is; --dry-run writes nothing.
func TestRemoveSupersedes(t *testing.T) {
	v := newVersions(t)
	mirror := "example.org/mirror/app:1"
	m := v.v2
	m.Names = []string{"example.com/app:1", mirror}
	putImage(t, v.s, m)
	imagesJSON := filepath.Join(v.dir, "overlay-images", "images.json")

	r, err := v.s.Remove(t.Context(), "example.com/app:1", RemoveOptions{})
	if err != nil || r.Superseded || r.ImageRemoved || !slices.Equal(v.image(t, m.ID).Names, []string{mirror}) {
		t.Fatalf("rm of one of two names: %+v, %v, names %v; want it untagged", r, err, v.image(t, m.ID).Names)
	}

	before := readFile(t, imagesJSON)
	dry, err := v.s.Remove(t.Context(), mirror, RemoveOptions{DryRun: true})
	wantKept := []string{"example.org/mirror/app@" + m.Digest.String()}
	if err != nil || !dry.Superseded || !slices.Equal(dry.KeptAs, wantKept) || !bytes.Equal(before, readFile(t, imagesJSON)) {
		t.Fatalf("rm --dry-run of the last name: %+v, %v; want it reported superseded as %v and nothing written", dry, err, wantKept)
	}
	r, err = v.s.Remove(t.Context(), mirror, RemoveOptions{})
	if err != nil || !r.Superseded || r.ImageRemoved || !slices.Equal(r.KeptAs, wantKept) || !slices.Equal(r.Names, []string{mirror}) {
		t.Fatalf("rm of the last name: %+v, %v; want it superseded, kept as %v", r, err, wantKept)
	}
	if got := v.image(t, m.ID).Names; !slices.Equal(got, wantKept) {
		t.Errorf("names after rm: %v, want %v", got, wantKept)
	}

	// Again, later, by its digested name: nothing changes, the grace period keeps its start.
	v.now = v.now.Add(time.Hour)
	before = readFile(t, imagesJSON)
	r, err = v.s.Remove(t.Context(), wantKept[0], RemoveOptions{})
	if err != nil || !r.Superseded || len(r.Names) != 0 || !bytes.Equal(before, readFile(t, imagesJSON)) {
		t.Errorf("rm of a superseded image: %+v, %v; want it left as it was", r, err)
	}
	if since := v.info(t, m.ID).Superseded; since == nil || !since.Equal(v.now.Add(-time.Hour)) {
		t.Errorf("superseded since %v, want the first rm's time", since)
	}

	// By ID: every repository it was known by gives a digested name.
	v1 := v.v1
	v1.Names = []string{"example.net/tools/app:2"}
	putImage(t, v.s, v1)
	r, err = v.s.Remove(t.Context(), v1.ID, RemoveOptions{})
	want := []string{"example.net/tools/app@" + v1.Digest.String(), digested(v1)}
	if err != nil || !r.Superseded || !slices.Equal(v.image(t, v1.ID).Names, want) {
		t.Errorf("rm by ID: %+v, %v, names %v; want superseded as %v", r, err, v.image(t, v1.ID).Names, want)
	}
	closeStore(t, v.s)
	checkClean(t, v.dir)
}

// rm --now removes the record and big data at once, as before superseding existed; the layers wait
// for gc's grace period.
func TestRemoveNow(t *testing.T) {
	v := newVersions(t)
	r, err := v.s.Remove(t.Context(), "app:stable", RemoveOptions{Now: true})
	if err != nil || !r.ImageRemoved || r.Superseded {
		t.Fatalf("rm --now: %+v, %v", r, err)
	}
	if _, ok := v.s.Image(v.v1.ID); ok || exists(filepath.Join(v.dir, "overlay-images", v.v1.ID)) {
		t.Error("rm --now left the image's record or big data")
	}
	report, err := v.s.GC(t.Context(), time.Hour, v.now, false)
	if err != nil || len(report.Deleted) != 0 || report.Waiting[v.own1.meta.ID] == "" {
		t.Errorf("gc inside the grace period: %+v, %v; want the layers waiting", report, err)
	}
	// Superseding an image already superseded --now removes it too.
	putImage(t, v.s, v.v1)
	putImage(t, v.s, v.v2)
	if r, err := v.s.Remove(t.Context(), digested(v.v1), RemoveOptions{Now: true}); err != nil || !r.ImageRemoved {
		t.Errorf("rm --now of a superseded image: %+v, %v", r, err)
	}
}

// gc keeps a superseded image, and the layers it uses, inside the grace period (and says until when);
// after it, gc removes the record, its big data and the layers no other image uses, in one run.
func TestGCRemovesSupersededImageAfterGrace(t *testing.T) {
	v := newVersions(t)
	superseded := v.now
	putImage(t, v.s, v.v2)
	grace := 24 * time.Hour

	report, err := v.s.GC(t.Context(), grace, superseded.Add(grace-time.Minute), false)
	if err != nil || len(report.RemovedImages) != 0 || len(report.Deleted) != 0 {
		t.Fatalf("gc inside the grace period: %+v, %v; want nothing removed", report, err)
	}
	if want := superseded.Add(grace).Format(time.RFC3339); report.WaitingImages[v.v1.ID] != want {
		t.Errorf("gc says the superseded image may go at %q, want %q", report.WaitingImages[v.v1.ID], want)
	}
	if _, waiting := report.Waiting[v.own1.meta.ID]; waiting {
		t.Error("the superseded image's layer is counted as unused while the image is kept")
	}
	v.image(t, v.v1.ID)

	after := superseded.Add(grace)
	dry, err := v.s.GC(t.Context(), grace, after, true)
	if err != nil || !slices.Equal(dry.RemovedImages, []string{v.v1.ID}) || !slices.Equal(dry.Deleted, []string{v.own1.meta.ID}) {
		t.Errorf("gc --dry-run after the grace period: %+v, %v", dry, err)
	}
	v.image(t, v.v1.ID)
	report, err = v.s.GC(t.Context(), grace, after, false)
	if err != nil || !slices.Equal(report.RemovedImages, []string{v.v1.ID}) {
		t.Fatalf("gc after the grace period: %+v, %v; want the superseded image removed", report, err)
	}
	if !slices.Equal(report.Deleted, []string{v.own1.meta.ID}) {
		t.Errorf("gc deleted layers %v, want only the superseded image's own layer %s", report.Deleted, v.own1.meta.ID)
	}
	if _, ok := v.s.Image(v.v1.ID); ok || exists(filepath.Join(v.dir, "overlay-images", v.v1.ID)) {
		t.Error("the superseded image's record or big data is still there")
	}
	if !v.s.HasLayer(v.base.meta.ID) || !v.s.HasLayer(v.own2.meta.ID) || v.s.HasLayer(v.own1.meta.ID) {
		t.Error("gc must delete the superseded image's own layer and keep the current image's")
	}
	if exists(filepath.Join(v.dir, "overlay", v.own1.meta.ID)) {
		t.Error("the deleted layer's files are still there")
	}
	closeStore(t, v.s)
	checkClean(t, v.dir)
}

// A tag moved back to an image it superseded makes that image current again: its name back, no
// digested name, no mark, and gc leaves it alone.
func TestRepublishMakesSupersededImageCurrent(t *testing.T) {
	v := newVersions(t)
	putImage(t, v.s, v.v2)
	if v.s.HasManifest(v.v1.ID, v.v1.Digest, []string{digested(v.v1)}) || !v.s.HasManifest(v.v1.ID, v.v1.Digest, nil) {
		t.Error("HasManifest must say a superseded image needs publishing under any name, and find it by manifest")
	}
	if rec, ok := v.s.ImageWithManifest("", v.v1.Digest, nil); !ok || rec.ID != v.v1.ID {
		t.Errorf("ImageWithManifest of the superseded image's manifest, no names: %s, %v; want %s", rec.ID, ok, v.v1.ID)
	}
	v.now = v.now.Add(time.Hour)
	if changed, err := v.s.PutImage(imageOf(v.v1, "docker://example.com/app:stable")); err != nil || !changed {
		t.Fatalf("publishing the superseded image again: %v, %v", changed, err)
	}
	if names := v.image(t, v.v1.ID).Names; !slices.Equal(names, []string{stable}) {
		t.Errorf("names after the tag moved back: %v, want [%s]", names, stable)
	}
	if info := v.info(t, v.v1.ID); info.Superseded != nil {
		t.Errorf("the image published again is still marked superseded (%v)", info.Superseded)
	}
	if names := v.image(t, v.v2.ID).Names; !slices.Equal(names, []string{digested(v.v2)}) {
		t.Errorf("the image the tag left: names %v, want [%s]", names, digested(v.v2))
	}
	report, err := v.s.GC(t.Context(), 0, v.now.Add(time.Hour), false)
	if err != nil || !slices.Equal(report.RemovedImages, []string{v.v2.ID}) {
		t.Errorf("gc after the grace period: %+v, %v; want only %s removed", report, err, v.v2.ID)
	}
	v.image(t, v.v1.ID)
}

// A tag that moves on every run, with gc after every run, keeps the store bounded to the current
// image plus the images superseded within the grace period, and their layers.
func TestMovingTagStaysBounded(t *testing.T) {
	v := newVersions(t)
	const step, grace, runs = time.Hour, 3 * time.Hour, 12
	for i := range runs {
		v.now = v.now.Add(step)
		own := commitTestLayer(t, v.s, v.base.meta.ID, []testEntry{{name: fmt.Sprintf("run%d", i), data: "x", mode: 0o644}})
		putImage(t, v.s, testImageMeta(t, []testLayer{v.base, own}, []string{stable}, fmt.Sprint(i)))
		report, err := v.s.GC(t.Context(), grace, v.now, false)
		if err != nil {
			t.Fatal(err)
		}
		// Kept: the current image and those superseded less than grace ago (one per step), each with
		// its own layer, plus the base layer; v2's layer is no image's at all and went at the first gc
		// after its grace period.
		wantImages := min(i+2, 1+int(grace/step))
		if got := len(v.s.Images()); got != wantImages {
			t.Errorf("run %d: %d images, want %d (report %+v)", i, got, wantImages, report)
		}
		if got, want := len(v.s.layers), wantImages+1+btoi(i < int(grace/step)); got != want {
			t.Errorf("run %d: %d layers, want %d (report %+v)", i, got, want, report)
		}
	}
	closeStore(t, v.s)
	checkClean(t, v.dir)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// A digested name never becomes a second image's name: one name held twice makes Podman refuse the
// whole store. An image whose digested name another image holds goes instead.
func TestDigestedNameNeverHeldTwice(t *testing.T) {
	v := newVersions(t)
	m := v.v2
	m.Names = []string{stable, digested(v.v1)} // an admin's --name that happens to be it
	putImage(t, v.s, m)
	if _, ok := v.s.Image(v.v1.ID); ok {
		t.Error("the old image was kept under a name the new image holds")
	}
	closeStore(t, v.s)
	checkClean(t, v.dir)
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// The mark is found however the metadata JSON spells its key, and only where it is set.
func TestSupersededSinceReadsEveryMark(t *testing.T) {
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		metadata string
		want     bool
	}{
		{``, false},
		{`{"cargohold":{"source":"docker://reg/superseded:1"}}`, false},
		{withSupersededMark(`{"podman":1}`, &since), true},
		{`{"cargohold":{"\u0073uperseded":"2026-01-02T03:04:05Z"}}`, true},
		{withSupersededMark(withSupersededMark(``, &since), nil), false},
	} {
		got, ok := supersededSince(storage.Image{Metadata: tc.metadata})
		if ok != tc.want || (ok && !got.Equal(since)) {
			t.Errorf("supersededSince(%s) = %v, %v; want superseded %v since %v", tc.metadata, got, ok, tc.want, since)
		}
	}
}
