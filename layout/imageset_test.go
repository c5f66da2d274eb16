package layout

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/storage"
)

// seen is every name, image ID and manifest digest a test's store has held, so that the lookups are
// checked for what went as well as for what is there.
type seen struct {
	names     []string
	ids       []string
	manifests []digest.Digest
}

func (u *seen) add(images []storage.Image) {
	for _, img := range images {
		if !slices.Contains(u.ids, img.ID) {
			u.ids = append(u.ids, img.ID)
		}
		for _, n := range img.Names {
			if !slices.Contains(u.names, n) {
				u.names = append(u.names, n)
			}
		}
		for _, k := range img.BigDataNames {
			if d, ok := strings.CutPrefix(k, manifestKeyPrefix); ok && !slices.Contains(u.manifests, digest.Digest(d)) {
				u.manifests = append(u.manifests, digest.Digest(d))
			}
		}
	}
}

// scanWithManifest is ImageWithManifest as a scan of the records: what the index must answer.
func scanWithManifest(images []storage.Image, id string, d digest.Digest, names []string) (string, bool) {
	for _, img := range images {
		if (id != "" && img.ID != id) || !slices.Contains(img.BigDataNames, manifestKey(d)) ||
			slices.ContainsFunc(names, func(n string) bool { return !slices.Contains(img.Names, n) }) {
			continue
		}
		if _, superseded := supersededSince(img); !superseded || len(names) == 0 {
			return img.ID, true
		}
	}
	return "", false
}

// lookups is every answer of the store's lookups about what u has seen, one line each.
func lookups(s *Store, u *seen) []string {
	var res []string
	for _, n := range u.names {
		res = append(res, fmt.Sprintf("HasName(%s) %v", n, s.HasName(n)))
	}
	for _, id := range u.ids {
		img, ok := s.Image(id)
		res = append(res, fmt.Sprintf("Image(%s) %v %v %q", id, ok, img.Names, img.Metadata))
	}
	for _, id := range append([]string{""}, u.ids...) {
		for _, d := range u.manifests {
			for _, names := range nameSets(u.names) {
				img, ok := s.ImageWithManifest(id, d, names)
				res = append(res, fmt.Sprintf("ImageWithManifest(%s, %s, %v) %s %v", id, d, names, img.ID, ok))
			}
		}
	}
	return append(res, fmt.Sprintf("NamesExcept() %v", s.NamesExcept(nil)))
}

// nameSets are the name lists the lookups are asked with: none, each name, and each pair of names.
func nameSets(names []string) [][]string {
	sets := [][]string{nil}
	for i, n := range names {
		sets = append(sets, []string{n})
		for _, m := range names[i+1:] {
			sets = append(sets, []string{n, m})
		}
	}
	return sets
}

// assertLookups fails the test where a lookup of the store answers otherwise than a scan of its
// records, or a record's superseded mark is not the one its metadata holds. It returns the answers.
func assertLookups(t *testing.T, s *Store, u *seen, step string) []string {
	t.Helper()
	images := s.Images()
	u.add(images)
	for _, n := range u.names {
		if want := slices.ContainsFunc(images, func(img storage.Image) bool { return slices.Contains(img.Names, n) }); s.HasName(n) != want {
			t.Errorf("%s: HasName(%s) = %v, want %v", step, n, !want, want)
		}
	}
	for _, id := range u.ids {
		i := slices.IndexFunc(images, func(img storage.Image) bool { return img.ID == id })
		if _, ok := s.Image(id); ok != (i >= 0) {
			t.Errorf("%s: Image(%s) found %v, want %v", step, id, ok, i >= 0)
		}
	}
	for _, id := range append([]string{""}, u.ids...) {
		for _, d := range u.manifests {
			for _, names := range nameSets(u.names) {
				wantID, wantOK := scanWithManifest(images, id, d, names)
				if img, ok := s.ImageWithManifest(id, d, names); ok != wantOK || img.ID != wantID {
					t.Errorf("%s: ImageWithManifest(%q, %s, %v) = %s, %v; want %s, %v", step, id, d, names, img.ID, ok, wantID, wantOK)
				}
			}
		}
	}
	s.mu.Lock()
	for i, img := range s.images.list {
		since, ok := supersededSince(img)
		if m := s.images.marks[i]; m.ok != ok || !m.since.Equal(since) {
			t.Errorf("%s: image %s has the superseded mark %+v, its metadata says %v, %v", step, img.ID, m, since, ok)
		}
	}
	s.mu.Unlock()
	return lookups(s, u)
}

// Every way the store's image records change leaves lookups that answer what a scan of the records
// answers (the index never goes stale), and a store opened again from disk answers the same.
func TestLookupsFollowEveryChange(t *testing.T) {
	v := newVersions(t)
	u := &seen{}
	assertLookups(t, v.s, u, "open and publish")

	putImage(t, v.s, v.v2) // the tag moves: v1 superseded
	assertLookups(t, v.s, u, "tag moved")

	mirror := "example.org/mirror/app:1"
	m := v.v1
	m.Names = []string{stable, mirror}
	v.now = v.now.Add(time.Hour)
	putImage(t, v.s, m) // v1 current again under two names, v2 superseded
	assertLookups(t, v.s, u, "superseded image published again")

	// A group of images recorded with one write, one of them taking a name of the other.
	own3 := commitTestLayer(t, v.s, v.base.meta.ID, []testEntry{{name: "three", data: "3", mode: 0o644}})
	v3 := testImageMeta(t, []testLayer{v.base, own3}, []string{"example.com/three:1", mirror}, "v3")
	v4 := testImageMeta(t, []testLayer{v.base, own3}, []string{"example.com/three:1"}, "v4")
	wait3, wait4 := v.s.queueImage(v3), v.s.queueImage(v4)
	v.s.FlushImages()
	if _, err := wait3(); err != nil {
		t.Fatal(err)
	}
	if _, err := wait4(); err != nil {
		t.Fatal(err)
	}
	assertLookups(t, v.s, u, "group recorded")

	if _, err := v.s.Remove(t.Context(), mirror, RemoveOptions{DryRun: true}); err != nil {
		t.Fatal(err)
	}
	assertLookups(t, v.s, u, "rm --dry-run")
	if _, err := v.s.Remove(t.Context(), mirror, RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	assertLookups(t, v.s, u, "rm of a name")
	if _, err := v.s.Remove(t.Context(), stable, RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	assertLookups(t, v.s, u, "rm of an image's last name")
	if _, err := v.s.Remove(t.Context(), "example.com/three:1", RemoveOptions{Now: true}); err != nil {
		t.Fatal(err)
	}
	assertLookups(t, v.s, u, "rm --now")

	if _, err := v.s.GC(t.Context(), time.Hour, v.now.Add(30*time.Minute), false); err != nil {
		t.Fatal(err)
	}
	assertLookups(t, v.s, u, "gc inside the grace period")
	if _, err := v.s.GC(t.Context(), time.Hour, v.now.Add(2*time.Hour), true); err != nil {
		t.Fatal(err)
	}
	assertLookups(t, v.s, u, "gc --dry-run")
	if r, err := v.s.GC(t.Context(), time.Hour, v.now.Add(time.Hour), false); err != nil || len(r.RemovedImages) == 0 {
		t.Fatalf("gc after the grace period: %+v, %v; want superseded images removed", r, err)
	}
	assertLookups(t, v.s, u, "gc after the grace period")

	// gc took every image and layer: publish two more, one superseding the other.
	base := commitTestLayer(t, v.s, "", baseEntries)
	v5 := testImageMeta(t, []testLayer{base}, []string{"example.com/five:1"}, "v5")
	v6 := testImageMeta(t, []testLayer{base}, []string{"example.com/five:1", "example.com/six:1"}, "v6")
	putImage(t, v.s, v5)
	putImage(t, v.s, v6)
	want := assertLookups(t, v.s, u, "published after gc")
	closeStore(t, v.s)
	s := openStore(t, v.dir)
	if got := assertLookups(t, s, u, "opened again"); !slices.Equal(got, want) {
		t.Errorf("the store opened again answers otherwise:\n%s", diffLines(want, got))
	}
}

// A store whose images.json holds a name twice (an older tool) is looked up as a scan would: the
// first image with the name answers, until a publish repairs the records.
func TestLookupsOfDamagedRecords(t *testing.T) {
	v := newVersions(t)
	u := &seen{}
	putImage(t, v.s, testImageMeta(t, []testLayer{v.base, v.own2}, []string{"example.com/other:1"}, "v2"))
	damaged := v.s.Images()
	damaged[0].Names = append(damaged[0].Names, "example.com/other:1")
	damaged = append(damaged, damaged[0]) // and an image recorded twice
	v.s.mu.Lock()
	if err := v.s.writeImagesJSON(damaged); err != nil {
		t.Fatal(err)
	}
	v.s.mu.Unlock()
	assertLookups(t, v.s, u, "damaged")
	want := lookups(v.s, u)
	closeStore(t, v.s)
	s := openStore(t, v.dir)
	if got := assertLookups(t, s, u, "damaged, opened again"); !slices.Equal(got, want) {
		t.Errorf("the store opened again answers otherwise:\n%s", diffLines(want, got))
	}
	putImage(t, s, v.v2)
	assertLookups(t, s, u, "repaired by a publish")
}

// diffLines lists the lines of got that differ from want's.
func diffLines(want, got []string) string {
	var d string
	for i := range max(len(want), len(got)) {
		var w, g string
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		if w != g {
			d += fmt.Sprintf("- %s\n+ %s\n", w, g)
		}
	}
	return d
}

// withImage changes no record it was given (the store's records are shared with what it returns),
// and says an image changed the records exactly when images.json would be written otherwise.
func TestWithImageLeavesBaseAndSaysWhatChanged(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	meta := func(tag string, names ...string) (imageMeta, []digest.Digest) {
		m := imageMeta{ID: digest.Canonical.FromString(tag).Encoded(), Digest: digest.Canonical.FromString("manifest " + tag),
			TopLayer: digest.Canonical.FromString("layer").Encoded(), Names: names, Metadata: `{"cargohold":{"source":"` + tag + `"}}`,
			BigData: []bigData{{Key: manifestKey(digest.Canonical.FromString("manifest " + tag)), Data: []byte(tag)}}}
		return m, []digest.Digest{digest.Canonical.FromString(tag)}
	}
	var base []storage.Image
	put := func(m imageMeta, d []digest.Digest) {
		next, _, _, err := withImage(base, m, d, now)
		if err != nil {
			t.Fatal(err)
		}
		base = next
	}
	put(meta("a", "example.com/a:1", "example.com/shared:1"))
	put(meta("b", "example.com/b:1"))
	put(meta("c", "example.com/c:1"))
	damaged := slices.Clone(base)
	damaged[1] = copyImage(damaged[1])
	damaged[1].Names = append(damaged[1].Names, "example.com/c:1") // a name held twice

	for _, tc := range []struct {
		name string
		base []storage.Image
		tag  string
		imgs []string
	}{
		{"the same image again", base, "a", []string{"example.com/a:1", "example.com/shared:1"}},
		{"a name of its own again", base, "b", []string{"example.com/b:1"}},
		{"a new name", base, "b", []string{"example.com/b:2"}},
		{"a new image", base, "d", []string{"example.com/d:1"}},
		{"a name taken from another image", base, "b", []string{"example.com/shared:1"}},
		{"the last name of another image", base, "d", []string{"example.com/c:1"}},
		{"a new image without names", base, "d", nil},
		{"the same image into damaged records", damaged, "a", []string{"example.com/a:1", "example.com/shared:1"}},
	} {
		before := make([]storage.Image, len(tc.base))
		for i, img := range tc.base {
			before[i] = copyImage(img)
		}
		beforeJSON, _ := json.Marshal(tc.base)
		m, d := meta(tc.tag, tc.imgs...)
		next, _, touched, err := withImage(tc.base, m, d, now)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if afterJSON, _ := json.Marshal(tc.base); !bytes.Equal(beforeJSON, afterJSON) || !reflect.DeepEqual(before, tc.base) {
			t.Errorf("%s: the records given changed", tc.name)
		}
		nextJSON, _ := json.Marshal(next)
		if want := !bytes.Equal(beforeJSON, nextJSON); recordsDiffer(tc.base, next, touched) != want {
			t.Errorf("%s: recordsDiffer says %v, the records marshalled say %v", tc.name, !want, want)
		}
	}
}
