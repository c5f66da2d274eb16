package main

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cargohold/cargohold/internal/testenv"
)

// lsEntry is what the tests read from ls --format json.
type lsEntry struct {
	ID         string     `json:"id"`
	Names      []string   `json:"names"`
	Superseded *time.Time `json:"superseded"`
	GCAfter    *time.Time `json:"gc_after"`
}

func lsJSON(t *testing.T, args ...string) []lsEntry {
	t.Helper()
	r := cargohold(t, append([]string{"ls", "--format", "json"}, args...)...)
	r.want(t, 0)
	var images []lsEntry
	if err := json.Unmarshal([]byte(r.stdout), &images); err != nil {
		t.Fatalf("ls --format json: %v\n%s", err, r.stdout)
	}
	return images
}

// A tag moved to another image leaves the old one superseded: ls shows it under its digested name,
// as superseded, with the time gc may remove it (text and JSON, after ls's --grace); inspect says so;
// rm supersedes, rm --now removes, gc after the grace period removes.
func TestLsShowsSupersededImages(t *testing.T) {
	testenv.RequireRoot(t)
	store := filepath.Join(t.TempDir(), "store")
	const app = "localhost/test/app:1"
	publish := func(fixture string) {
		t.Helper()
		cargohold(t, "publish", "--store", store, "--insecure-policy", "--name", app, ociRef(fixture)).want(t, 0)
	}
	publish("hello:1")
	publish("other:1") // the tag moves

	images := lsJSON(t, "--store", store)
	if len(images) != 2 {
		t.Fatalf("ls lists %d images, want the current one and the superseded one: %+v", len(images), images)
	}
	old, cur := images[0], images[1]
	if old.Names[0] == app {
		old, cur = cur, old
	}
	digested := regexp.MustCompile(`^localhost/test/app@sha256:[0-9a-f]{64}$`)
	if len(old.Names) != 1 || !digested.MatchString(old.Names[0]) || old.Superseded == nil || old.GCAfter == nil {
		t.Fatalf("the old image: %+v, want it superseded under its digested name", old)
	}
	if cur.Superseded != nil || cur.GCAfter != nil {
		t.Errorf("the current image shows as superseded: %+v", cur)
	}
	if time.Since(*old.Superseded) > time.Minute || !sameTime(old.GCAfter, old.Superseded.Add(24*time.Hour)) {
		t.Errorf("superseded %v, gc after %v; want now and 24h (gc's default grace) later", old.Superseded, old.GCAfter)
	}
	if withGrace := lsJSON(t, "--store", store, "--grace", "1h"); !sameTime(gcAfter(withGrace, old.ID), old.Superseded.Add(time.Hour)) {
		t.Errorf("ls --grace 1h: gc after %v, want 1h after %v", gcAfter(withGrace, old.ID), old.Superseded)
	}

	ls := cargohold(t, "ls", "--store", store)
	wantLine := regexp.MustCompile(regexp.QuoteMeta(old.Names[0]) + `\s+` + old.ID[:12] + `.*superseded .* ago, gc after ` +
		regexp.QuoteMeta(old.GCAfter.UTC().Format(time.RFC3339)))
	if !wantLine.MatchString(ls.stdout) || !regexp.MustCompile(regexp.QuoteMeta(app)+`\s.*current`).MatchString(ls.stdout) {
		t.Errorf("ls does not show the old image as superseded with its gc time and the new as current:\n%s", ls.stdout)
	}
	if strings.Contains(ls.stdout, "<none>") {
		t.Errorf("ls shows a <none> image:\n%s", ls.stdout)
	}
	if r := cargohold(t, "inspect", "--store", store, old.ID); !strings.Contains(r.stdout, "Superseded: ") {
		t.Errorf("inspect does not say the image is superseded:\n%s", r.stdout)
	}

	r := cargohold(t, "rm", "--store", store, app)
	r.want(t, 0)
	if !strings.Contains(r.stdout, "superseded "+cur.ID[:12]+" "+app+"  (kept as localhost/test/app@sha256:") {
		t.Errorf("rm of the last name does not say the image is kept:\n%s", r.stdout)
	}
	if images := lsJSON(t, "--store", store); len(images) != 2 || gcAfter(images, cur.ID) == nil {
		t.Errorf("after rm, ls: %+v; want both images, superseded", images)
	}
	r = cargohold(t, "rm", "--store", store, "--now", old.Names[0])
	r.want(t, 0)
	if !strings.Contains(r.stdout, "removed "+old.ID[:12]) || len(lsJSON(t, "--store", store)) != 1 {
		t.Errorf("rm --now did not remove the image at once:\n%s", r.stdout)
	}

	r = cargohold(t, "gc", "--store", store, "--json")
	r.want(t, 0)
	var report struct {
		RemovedImages []string          `json:"removed_images"`
		WaitingImages map[string]string `json:"waiting_images"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &report); err != nil || len(report.RemovedImages) != 0 || report.WaitingImages[cur.ID] == "" {
		t.Errorf("gc inside the grace period: %s (%v); want the superseded image waiting", r.stdout, err)
	}
	r = cargohold(t, "gc", "--store", store, "--grace", "0s")
	r.want(t, 0)
	if !strings.Contains(r.stdout, "removed image "+cur.ID[:12]) || len(lsJSON(t, "--store", store)) != 0 {
		t.Errorf("gc after the grace period did not remove the superseded image:\n%s", r.stdout)
	}
}

func gcAfter(images []lsEntry, id string) *time.Time {
	for _, img := range images {
		if img.ID == id {
			return img.GCAfter
		}
	}
	return nil
}

func sameTime(a *time.Time, b time.Time) bool { return a != nil && a.Equal(b) }

// A first publish in which nothing is published (a typo'd reference) exits 1 as before and leaves no
// store behind, neither a new path nor the content of an empty dir, and registers nothing.
func TestFailedFirstPublishLeavesNoStore(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	missing, empty := filepath.Join(dir, "new", "store"), filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "storage.conf")
	for _, store := range []string{missing, empty} {
		r := cargohold(t, "publish", "--store", store, "--insecure-policy", "--register", conf, "--name", "localhost/test/app:1",
			"oci:"+filepath.Join(layouts, "typo")+":1")
		r.want(t, 1, "nothing was published, so the new store "+store+" is removed again")
		if store == missing {
			if _, err := os.Lstat(store); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the failed first publish left %s: %v", store, err)
			}
		} else if entries, err := os.ReadDir(store); err != nil || len(entries) > 0 {
			t.Errorf("the failed first publish left %v in the empty dir %s (%v)", entries, store, err)
		}
		if _, err := os.Lstat(conf); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the store that is gone was registered in %s", conf)
		}
	}
	// Into an existing store, a failure changes nothing of that: the store stays.
	cargohold(t, publishArgs(missing)...).want(t, 0)
	cargohold(t, "publish", "--store", missing, "--insecure-policy", "oci:"+filepath.Join(layouts, "typo")+":1").want(t, 1,
		"1 of 1 images failed; the store "+missing+" keeps the images it held before")
	cargohold(t, "ls", "--store", missing).want(t, 0)
}
