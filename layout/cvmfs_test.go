package layout

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cargohold/cargohold/internal/testimage"
	"golang.org/x/sys/unix"
)

// markerStat returns the marker's inode and change time, which any rewrite would change.
func markerStat(t *testing.T, dir, id string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	p := filepath.Join(dir, "overlay", id, catalogMarkerName)
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("layer %s has no catalog marker: %v", id, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != 0 || st.Mode&0o777 != 0o644 {
		t.Errorf("%s: want an empty regular file 0644, got mode %o size %d", p, st.Mode, st.Size)
	}
	return st
}

func TestCatalogMarkers(t *testing.T) {
	dir := t.TempDir()

	// A layer of a plain store has no marker, and its diff/ never gets one.
	s := openStore(t, dir)
	base := commitTestLayer(t, s, "", baseEntries)
	closeStore(t, s)
	if _, err := os.Lstat(filepath.Join(dir, "overlay", base.meta.ID, catalogMarkerName)); !os.IsNotExist(err) {
		t.Fatalf("plain store: want no marker, got %v", err)
	}

	// Turning the option on marks the existing layer; new layers get theirs before they are renamed
	// into place.
	s, err := OpenWithOptions(t.Context(), dir, Options{CatalogMarkers: true})
	if err != nil {
		t.Fatal(err)
	}
	baseMarker := markerStat(t, dir, base.meta.ID)
	child := commitTestLayer(t, s, base.meta.ID, childEntries)
	childMarker := markerStat(t, dir, child.meta.ID)
	for _, l := range []testLayer{base, child} {
		if _, err := os.Lstat(filepath.Join(dir, "overlay", l.meta.ID, "diff", catalogMarkerName)); !os.IsNotExist(err) {
			t.Errorf("layer %s: the marker must not be inside diff/ (containers would see it): %v", l.meta.ID, err)
		}
	}
	putImage(t, s, testImageMeta(t, []testLayer{base, child}, []string{"example.com/app:1"}, "one"))
	closeStore(t, s)

	// Opening again rewrites nothing: CVMFS republishes what changed.
	s, err = OpenWithOptions(t.Context(), dir, Options{CatalogMarkers: true})
	if err != nil {
		t.Fatal(err)
	}
	closeStore(t, s)
	for id, before := range map[string]unix.Stat_t{base.meta.ID: baseMarker, child.meta.ID: childMarker} {
		after := markerStat(t, dir, id)
		if after.Ino != before.Ino || after.Ctim != before.Ctim {
			t.Errorf("layer %s: marker rewritten on open", id)
		}
	}

	// Podman's view is unchanged by the extra file: images list, layers regenerate byte for byte.
	if err := testimage.VerifyStore(dir, "overlay"); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}
