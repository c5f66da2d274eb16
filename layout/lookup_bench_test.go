package layout

import (
	"fmt"
	"testing"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/storage"
)

// manyImages records n images in s, all on one layer, image i named example.com/app<i>:1 and
// holding the manifest manifestOf(i); every tenth is superseded (kept under its digested name), as a
// store a nightly resync has run on for a while. The records are built from one real one and written
// at once: what is measured is the lookups, not n publishes.
func manyImages(tb testing.TB, s *Store, n int) testLayer {
	tb.Helper()
	base := commitTestLayer(tb, s, "", baseEntries)
	model := testImageMeta(tb, []testLayer{base}, []string{"example.com/model:1"}, "model")
	if _, err := s.putImage(model); err != nil {
		tb.Fatal(err)
	}
	rec, _ := s.Image(model.ID)
	images := make([]storage.Image, 0, n)
	for i := range n {
		img := copyImage(rec)
		img.ID = digest.Canonical.FromString(fmt.Sprint("image ", i)).Encoded()
		img.Digest = manifestOf(i)
		img.Names = []string{fmt.Sprintf("example.com/app%d:1", i)}
		img.BigDataNames = []string{configKey(img.ID), manifestKey(img.Digest), storage.ImageDigestBigDataKey}
		if i%10 == 9 {
			img.Names = digestedNames(img.Names, img.Digest)
			since := s.clock().UTC()
			img.Metadata = withSupersededMark(img.Metadata, &since)
		}
		images = append(images, img)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writeImagesJSON(images); err != nil {
		tb.Fatal(err)
	}
	return base
}

// manifestOf is the manifest digest manyImages gives image i.
func manifestOf(i int) digest.Digest { return digest.Canonical.FromString(fmt.Sprint("manifest ", i)) }

// BenchmarkResyncLookups asks a store of 1,000 images what a no-op resync of all of them asks (per
// image: HasName, then ImageWithManifest before its turn and in it).
func BenchmarkResyncLookups(b *testing.B) {
	const n = 1000
	s := openStore(b, b.TempDir())
	manyImages(b, s, n)
	names, manifests := make([][]string, n), make([]digest.Digest, n)
	for i := range n {
		names[i], manifests[i] = []string{fmt.Sprintf("example.com/app%d:1", i)}, manifestOf(i)
	}
	for b.Loop() {
		for i := range n {
			if s.HasName(names[i][0]) != (i%10 != 9) {
				b.Fatalf("HasName(%s) is wrong", names[i][0])
			}
			for range 2 {
				if _, ok := s.ImageWithManifest("", manifests[i], names[i]); ok != (i%10 != 9) {
					b.Fatalf("ImageWithManifest of image %d is wrong", i)
				}
			}
		}
	}
}

// BenchmarkPutImagesInto1000 records 50 new images, queued as one group, into a store of 1,000
// images: what a publish of new images costs in records beside its layers.
func BenchmarkPutImagesInto1000(b *testing.B) {
	const n, group = 1000, 50
	s := openStore(b, b.TempDir())
	base := manyImages(b, s, n)
	round := 0
	for b.Loop() {
		var waits []func() (Put, error)
		for i := range group {
			img := testImageMeta(b, []testLayer{base}, []string{fmt.Sprintf("example.com/new%d-%d:1", round, i)}, fmt.Sprint(round, "-", i))
			waits = append(waits, s.queueImage(img))
		}
		s.FlushImages()
		for _, wait := range waits {
			if _, err := wait(); err != nil {
				b.Fatal(err)
			}
		}
		round++
	}
}

// BenchmarkIndexImages indexes the records of 1,000 images as an open does (every superseded mark
// decoded: new) and as a write does (the marks of unchanged records taken over: written).
func BenchmarkIndexImages(b *testing.B) {
	s := openStore(b, b.TempDir())
	manyImages(b, s, 1000)
	list := s.Images()
	b.Run("new", func(b *testing.B) {
		for b.Loop() {
			_ = newImageSet(list, nil)
		}
	})
	b.Run("written", func(b *testing.B) {
		prev := newImageSet(list, nil)
		for b.Loop() {
			_ = newImageSet(list, &prev)
		}
	})
}
