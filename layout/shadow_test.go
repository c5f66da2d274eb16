package layout

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// publishedStore writes a store at dir with images app:1 (base + child) and base:1 (base only).
func publishedStore(t *testing.T, dir string) (base, child testLayer, baseImage imageMeta) {
	t.Helper()
	s, err := OpenWithOptions(context.Background(), dir, Options{Create: true, CatalogMarkers: true})
	if err != nil {
		t.Fatal(err)
	}
	base = commitTestLayer(t, s, "", baseEntries)
	child = commitTestLayer(t, s, base.meta.ID, childEntries)
	putImage(t, s, testImageMeta(t, []testLayer{base, child}, []string{"example.com/app:1"}, "app"))
	baseImage = testImageMeta(t, []testLayer{base}, []string{"example.com/base:1"}, "base")
	putImage(t, s, baseImage)
	closeStore(t, s)
	return base, child, baseImage
}

func shadowChanges(t *testing.T, dir, published string) Changes {
	t.Helper()
	c, err := ShadowChanges(dir, published)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestShadow(t *testing.T) {
	pub := filepath.Join(t.TempDir(), "store")
	base, child, baseImage := publishedStore(t, pub)
	shadow := filepath.Join(t.TempDir(), "shadow")
	if err := Shadow(shadow, pub); err != nil {
		t.Fatal(err)
	}

	// Layer contents and tar-splits stand in; the small files are copies.
	for _, rel := range []string{"overlay/" + base.meta.ID + "/diff", "overlay-layers/" + child.meta.ID + ".tar-split.gz"} {
		if target, err := os.Readlink(filepath.Join(shadow, rel)); err != nil || target != filepath.Join(pub, rel) {
			t.Errorf("%s: want a stand-in for %s, got %q, %v", rel, filepath.Join(pub, rel), target, err)
		}
	}
	for _, rel := range []string{"overlay/" + child.meta.ID + "/link", "overlay/" + child.meta.ID + "/lower",
		"overlay/" + child.meta.ID + "/" + catalogMarkerName, "overlay-layers/layers.json", "overlay-images/images.json", markerName} {
		if fi, err := os.Lstat(filepath.Join(shadow, rel)); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s: want a copy, got %v", rel, err)
		}
	}
	for _, rel := range []string{writerLockName, stagingDir} {
		if _, err := os.Lstat(filepath.Join(shadow, rel)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: a writer's own, not to be copied: %v", rel, err)
		}
	}

	// Opening and closing the shadow changes nothing.
	s, err := OpenWithOptions(context.Background(), shadow, Options{CatalogMarkers: true})
	if err != nil {
		t.Fatal(err)
	}
	closeStore(t, s)
	if c := shadowChanges(t, shadow, pub); !c.Empty() {
		t.Fatalf("an unchanged shadow has changes: %+v", c)
	}

	// A new layer on top of a stand-in sees the published layers below it; a removed image goes.
	s, err = OpenWithOptions(context.Background(), shadow, Options{CatalogMarkers: true})
	if err != nil {
		t.Fatal(err)
	}
	l, data := stageTarOn(t, s, child.meta.ID, grandchildEntries)
	lowers, err := l.LowerDiffDirs()
	if err != nil {
		t.Fatal(err)
	}
	if entries, err := os.ReadDir(lowers[0]); err != nil || len(entries) != 2 {
		t.Errorf("the child layer seen below the new layer through its stand-in: %v, %v; want etc and opt", entries, err)
	}
	grandchild := testLayer{meta: layerMetaFor(child.meta.ID, data), tar: data}
	if err := s.CommitLayer(l, grandchild.meta); err != nil {
		t.Fatal(err)
	}
	newImage := testImageMeta(t, []testLayer{base, child, grandchild}, []string{"example.com/app:2"}, "app2")
	putImage(t, s, newImage)
	if _, err := s.Remove(context.Background(), "example.com/base:1", RemoveOptions{Now: true}); err != nil {
		t.Fatal(err)
	}
	link, _ := s.linkOf(grandchild.meta.ID)
	closeStore(t, s)

	c := shadowChanges(t, shadow, pub)
	if want := []string{"overlay/" + grandchild.meta.ID}; !slices.Equal(c.NewLayers, want) {
		t.Errorf("new layers %v, want %v", c.NewLayers, want)
	}
	if len(c.Identity) != 0 {
		t.Errorf("identity %v for a store that has one", c.Identity)
	}
	for _, rel := range []string{link, "overlay-layers/" + grandchild.meta.ID + ".tar-split.gz", "overlay-images/" + newImage.ID,
		"overlay-images/" + newImage.ID + "/manifest"} {
		if !slices.Contains(c.Write, rel) {
			t.Errorf("writes %v lack %s", c.Write, rel)
		}
	}
	if n := len(c.Write); n < 4 || !slices.Equal(c.Write[n-4:], []string{"overlay-layers/layers.json", "overlay-layers/layers.lock",
		"overlay-images/images.json", "overlay-images/images.lock"}) {
		t.Errorf("writes %v: want the records last, layers before images", c.Write)
	}
	if want := []string{"overlay-images/" + baseImage.ID}; !slices.Equal(c.Remove, want) {
		t.Errorf("removals %v, want %v", c.Remove, want)
	}
}

func TestShadowOfANewStore(t *testing.T) {
	pub := filepath.Join(t.TempDir(), "store") // does not exist yet
	shadow := filepath.Join(t.TempDir(), "shadow")
	if err := Shadow(shadow, pub); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, shadow)
	base := commitTestLayer(t, s, "", baseEntries)
	putImage(t, s, testImageMeta(t, []testLayer{base}, []string{"example.com/base:1"}, "base"))
	closeStore(t, s)
	c := shadowChanges(t, shadow, pub)
	if want := []string{privateDir, markerName}; !slices.Equal(c.Identity, want) {
		t.Errorf("identity %v, want %v: a new store's marker comes with its first layers", c.Identity, want)
	}
	if want := []string{"overlay/" + base.meta.ID}; !slices.Equal(c.NewLayers, want) || !slices.Contains(c.Write, ".") {
		t.Errorf("changes %+v: want the new layer and the store's root", c)
	}
}

func TestShadowRemovesLeftovers(t *testing.T) {
	pub := filepath.Join(t.TempDir(), "store")
	publishedStore(t, pub)
	// What an ingest leaves whose transaction then failed: a layer dir that no record names.
	id := strings.Repeat("a", 64)
	leftovers := []string{"overlay/" + id, "overlay-layers/" + id + ".tar-split.gz"}
	if err := os.MkdirAll(filepath.Join(pub, "overlay", id, "diff"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pub, leftovers[1]), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	shadow := filepath.Join(t.TempDir(), "shadow")
	if err := Shadow(shadow, pub); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, shadow) // removes the leftovers in the shadow
	closeStore(t, s)
	if c := shadowChanges(t, shadow, pub); !slices.Equal(c.Remove, leftovers) || len(c.Write)+len(c.NewLayers) != 0 {
		t.Errorf("changes %+v, want the removal of %v only", c, leftovers)
	}
}

func TestShadowRefuses(t *testing.T) {
	vfs := filepath.Join(t.TempDir(), "vfs")
	s, err := OpenWithOptions(context.Background(), vfs, Options{Create: true, Driver: VFS})
	if err != nil {
		t.Fatal(err)
	}
	base := commitTestLayer(t, s, "", baseEntries)
	putImage(t, s, testImageMeta(t, []testLayer{base}, []string{"example.com/base:1"}, "base"))
	closeStore(t, s)
	if err := Shadow(filepath.Join(t.TempDir(), "shadow"), vfs); err == nil {
		t.Error("a shadow of a vfs store")
	}
	foreign := t.TempDir()
	if err := os.WriteFile(filepath.Join(foreign, "notes.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Shadow(filepath.Join(t.TempDir(), "shadow"), foreign); !errors.Is(err, ErrNotStore) {
		t.Errorf("a shadow of a directory that is no store: %v, want ErrNotStore", err)
	}
}
