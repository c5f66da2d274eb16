package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cargohold/cargohold/internal/testenv"
)

// ls and inspect say when gc may remove a superseded image by the grace period the store's last gc
// used, without being told it again; their own --grace still wins.
func TestReadersFollowGCGrace(t *testing.T) {
	testenv.RequireRoot(t)
	store := filepath.Join(t.TempDir(), "store")
	const app = "localhost/test/app:1"
	for _, fixture := range []string{"hello:1", "other:1"} { // the tag moves
		cargohold(t, "publish", "--store", store, "--insecure-policy", "--name", app, ociRef(fixture)).want(t, 0)
	}
	superseded := func(images []lsEntry) lsEntry {
		for _, img := range images {
			if img.Superseded != nil {
				return img
			}
		}
		t.Fatalf("no superseded image in %+v", images)
		return lsEntry{}
	}
	old := superseded(lsJSON(t, "--store", store))
	if !sameTime(old.GCAfter, old.Superseded.Add(24*time.Hour)) {
		t.Errorf("before any gc: gc after %v, want 24h (the default) after %v", old.GCAfter, old.Superseded)
	}

	cargohold(t, "gc", "--store", store, "--grace", "72h", "--quiet").want(t, 0)
	want := old.Superseded.Add(72 * time.Hour)
	if got := superseded(lsJSON(t, "--store", store)); !sameTime(got.GCAfter, want) {
		t.Errorf("after gc --grace 72h, ls: gc after %v, want %v", got.GCAfter, want)
	}
	if got := superseded(lsJSON(t, "--store", store, "--grace", "1h")); !sameTime(got.GCAfter, old.Superseded.Add(time.Hour)) {
		t.Errorf("ls --grace 1h after gc --grace 72h: gc after %v, want ls's own 1h after %v", got.GCAfter, old.Superseded)
	}
	r := cargohold(t, "inspect", "--store", store, old.ID)
	r.want(t, 0)
	if !strings.Contains(r.stdout, "GC after:  "+want.UTC().Format(time.RFC3339)) {
		t.Errorf("inspect does not say when gc may remove the image (%s):\n%s", want.UTC().Format(time.RFC3339), r.stdout)
	}
	r = cargohold(t, "inspect", "--store", store, "--format", "json", old.ID)
	r.want(t, 0)
	var info lsEntry
	if err := json.Unmarshal([]byte(r.stdout), &info); err != nil || !sameTime(info.GCAfter, want) {
		t.Errorf("inspect --format json: gc_after %v (%v), want %v\n%s", info.GCAfter, err, want, r.stdout)
	}
}
