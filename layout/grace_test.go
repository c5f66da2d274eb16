package layout

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// gcAfter is when a reader of the store at dir says gc may remove image id, given grace (nil: none).
func gcAfter(t *testing.T, dir, id string, given *time.Duration) time.Time {
	t.Helper()
	snap, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	grace, err := snap.Grace(given)
	if err != nil {
		t.Fatal(err)
	}
	infos, err := snap.Infos(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range infos {
		if info.ID == id {
			after := info.GCAfter(grace)
			if after == nil {
				t.Fatalf("image %s is not superseded", id)
			}
			return *after
		}
	}
	t.Fatalf("image %s not read", id)
	return time.Time{}
}

// gc records the grace period it used, and readers (ls, inspect) say when gc may remove a superseded
// image by it: no --grace needed to get the time right; a reader's own grace still wins; a dry run,
// which changes nothing, records nothing.
func TestGCRecordsGraceForReaders(t *testing.T) {
	v := newVersions(t)
	superseded := v.now
	putImage(t, v.s, v.v2)
	current := v.info(t, v.v2.ID)
	if current.GCAfter(time.Hour) != nil {
		t.Error("a current image has a time gc may remove it")
	}

	if got := gcAfter(t, v.dir, v.v1.ID, nil); !got.Equal(superseded.Add(DefaultGrace)) {
		t.Errorf("before any gc: gc after %v, want the default grace's %v", got, superseded.Add(DefaultGrace))
	}
	grace := 72 * time.Hour
	if _, err := v.s.GC(t.Context(), grace, superseded.Add(time.Hour), true); err != nil {
		t.Fatal(err)
	}
	if exists(filepath.Join(v.dir, graceJSON)) {
		t.Error("gc --dry-run recorded its grace period")
	}
	if _, err := v.s.GC(t.Context(), grace, superseded.Add(time.Hour), false); err != nil {
		t.Fatal(err)
	}
	if got := gcAfter(t, v.dir, v.v1.ID, nil); !got.Equal(superseded.Add(grace)) {
		t.Errorf("after gc --grace %v: readers say gc after %v, want %v", grace, got, superseded.Add(grace))
	}
	given := 2 * time.Hour
	if got := gcAfter(t, v.dir, v.v1.ID, &given); !got.Equal(superseded.Add(given)) {
		t.Errorf("with the reader's own grace %v: gc after %v, want %v", given, got, superseded.Add(given))
	}
	fi, err := os.Stat(filepath.Join(v.dir, graceJSON))
	if err != nil || fi.Mode().Perm() != fileMode {
		t.Errorf("%s: %v, mode %v; want it readable by every reader (%v)", graceJSON, err, fi.Mode().Perm(), fileMode)
	}

	// A later gc with another grace: readers follow it. The store still reads as Podman reads it.
	if _, err := v.s.GC(t.Context(), time.Hour, superseded.Add(30*time.Minute), false); err != nil {
		t.Fatal(err)
	}
	if got := gcAfter(t, v.dir, v.v1.ID, nil); !got.Equal(superseded.Add(time.Hour)) {
		t.Errorf("after gc --grace 1h: gc after %v, want %v", got, superseded.Add(time.Hour))
	}
	closeStore(t, v.s)
	checkClean(t, v.dir)
}

// A damaged record of the grace period is an error that names the file and what to do; a reader's
// own grace does not need it.
func TestDamagedGraceRecord(t *testing.T) {
	v := newVersions(t)
	closeStore(t, v.s)
	if err := os.WriteFile(filepath.Join(v.dir, graceJSON), []byte(`{"grace": "soon"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	snap, err := Read(v.dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snap.Grace(nil); err == nil || !strings.Contains(err.Error(), graceJSON) || !strings.Contains(err.Error(), "delete it") {
		t.Errorf("damaged %s: error %v, want one naming it and saying to delete it", graceJSON, err)
	}
	given := time.Hour
	if g, err := snap.Grace(&given); err != nil || g != given {
		t.Errorf("with the reader's own grace: %v, %v", g, err)
	}
}
