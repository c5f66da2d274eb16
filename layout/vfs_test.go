package layout

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func openVFSStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := OpenWithOptions(t.Context(), dir, Options{Driver: VFS, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	keepStore(s)
	t.Cleanup(func() { closeStore(t, s) })
	return s
}

// A vfs store keeps each layer as a whole tree under vfs/dir/<id>, records under vfs-layers/ and
// vfs-images/, and nothing of the overlay format.
func TestVFSStoreLayout(t *testing.T) {
	dir := t.TempDir()
	s := openVFSStore(t, dir)
	base := commitTestLayer(t, s, "", baseEntries)
	child := commitTestLayer(t, s, base.meta.ID, childEntries)
	putImage(t, s, testImageMeta(t, []testLayer{base, child}, []string{"example.com/app:1"}, "app"))

	for _, p := range []string{"vfs-layers/layers.json", "vfs-layers/layers.lock", "vfs-images/images.json", "vfs-images/images.lock",
		"vfs-layers/" + child.meta.ID + ".tar-split.gz", "vfs/dir/" + base.meta.ID + "/etc/hello"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	for _, p := range []string{"overlay", "overlay-layers", "overlay-images", "vfs/dir/" + child.meta.ID + "/link"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); err == nil {
			t.Errorf("a vfs store has %s", p)
		}
	}
	// The child's tree holds its parent's files (copied) and its own.
	for _, f := range []string{"etc/hello", "etc/child", "opt/run.sh"} {
		if _, err := os.Lstat(filepath.Join(dir, "vfs/dir", child.meta.ID, f)); err != nil {
			t.Errorf("child layer tree: %v", err)
		}
	}
	assertMode(t, filepath.Join(dir, "vfs/dir", child.meta.ID, "etc/child"), 0o600)

	r, err := Check(t.Context(), dir, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || r.Images != 1 || r.Layers != 2 {
		t.Errorf("check: %+v", r)
	}
	snap, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if img, err := snap.Find("example.com/app:1"); err != nil {
		t.Error(err)
	} else if info, err := snap.Info(img); err != nil || len(info.Layers) != 2 {
		t.Errorf("info %+v, %v", info, err)
	} else if want := filepath.Join(dir, "vfs", "dir", info.Layers[1].ID); info.Layers[1].Dir != want {
		t.Errorf("top layer's dir %s, want %s", info.Layers[1].Dir, want)
	}
}

func TestVFSDriverIsKeptAndChecked(t *testing.T) {
	dir := t.TempDir()
	s := openVFSStore(t, dir)
	commitTestLayer(t, s, "", baseEntries)
	closeStore(t, s)

	s2 := openStore(t, dir) // no driver asked for: the store's own
	if s2.Driver() != VFS {
		t.Errorf("reopened as %s", s2.Driver())
	}
	closeStore(t, s2)
	_, err := OpenWithOptions(t.Context(), dir, Options{Driver: Overlay})
	if !errors.Is(err, ErrWrongDriver) || !strings.Contains(err.Error(), "--driver vfs") {
		t.Errorf("opening a vfs store as overlay: %v, want ErrWrongDriver with a hint", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "overlay")); err == nil {
		t.Error("the refused open created overlay/")
	}
	if s := openStore(t, t.TempDir()); s.Driver() != Overlay {
		t.Errorf("a new store without a driver is %s, want overlay", s.Driver())
	}
	if _, err := ParseDriver("btrfs"); err == nil {
		t.Error("ParseDriver accepted btrfs")
	}
}

// Leftovers, rm and gc work on vfs paths.
func TestVFSLeftoversRemoveAndGC(t *testing.T) {
	dir := t.TempDir()
	s := openVFSStore(t, dir)
	base := commitTestLayer(t, s, "", baseEntries)
	img := testImageMeta(t, []testLayer{base}, []string{"example.com/a:1"}, "a")
	putImage(t, s, img)
	closeStore(t, s)

	orphan := "vfs/dir/" + strings.Repeat("ab", 32)
	if err := os.MkdirAll(filepath.Join(dir, orphan, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	r, err := Check(t.Context(), dir, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := leftoverPaths(r.Leftovers); len(got) != 1 || got[0] != orphan {
		t.Errorf("leftovers %v, want [%s]", got, orphan)
	}
	s = openStore(t, dir)
	if _, err := os.Lstat(filepath.Join(dir, orphan)); err == nil {
		t.Error("Open left the orphan layer dir")
	}

	if _, err := s.Remove(t.Context(), "example.com/a:1", RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GC(t.Context(), 0, time.Now(), false); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"vfs/dir/" + base.meta.ID, "vfs-layers/" + base.meta.ID + ".tar-split.gz", "vfs-images/" + img.ID} {
		if _, err := os.Lstat(filepath.Join(dir, p)); err == nil {
			t.Errorf("%s still there after rm and gc", p)
		}
	}
}
