package layout

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cargohold/cargohold/internal/testimage"
)

// treeShape is treeState without directory mtimes, which creating and removing entries changes.
func treeShape(t *testing.T, root string) map[string]testimage.FileState {
	t.Helper()
	state := treeState(t, root)
	for p, s := range state {
		if s.Mode.IsDir() {
			s.MTime = time.Time{}
			state[p] = s
		}
	}
	return state
}

// A store that an open created (a missing path, or an empty dir) and that records no image when it is
// closed (a first publish that failed: nothing to register with Podman) is taken away again: exactly
// what cargohold made goes, and what was there before stays, down to the dir's mode.
func TestNewStoreWithoutImageIsRemoved(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func(t *testing.T) string // the path to publish into, with what is there already
	}{
		{"missing path", func(t *testing.T) string {
			// Parents it creates stay: removing them could take away another run's new store.
			parent := filepath.Join(t.TempDir(), "site")
			if err := os.Mkdir(parent, 0o755); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(parent, "store")
		}},
		{"empty dir", func(t *testing.T) string {
			dir := filepath.Join(t.TempDir(), "store")
			writeTree(t, dir, map[string]string{"lost+found/": "", ".cvmfscatalog": "", "lost+found/#123": "found"},
				map[string]fs.FileMode{".": 0o700, "lost+found": 0o700})
			return dir
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.store(t)
			before := treeShape(t, filepath.Dir(dir))
			for _, driver := range []Driver{Overlay, VFS} {
				s, err := OpenWithOptions(t.Context(), dir, Options{Create: true, Driver: driver})
				if err != nil {
					t.Fatal(err)
				}
				commitTestLayer(t, s, "", baseEntries) // a layer, but the image failed
				if !s.DiscardedOnClose() {
					t.Errorf("%s: DiscardedOnClose is false for a new store without images", driver)
				}
				closeStore(t, s)
				if diffs := testimage.DiffTrees(before, treeShape(t, filepath.Dir(dir))); len(diffs) > 0 {
					t.Errorf("%s: after closing the store without images: %v", driver, diffs)
				}
			}

			// An image recorded: the store stays, and stays when a later open leaves it without images.
			s, err := OpenWithOptions(t.Context(), dir, Options{Create: true})
			if err != nil {
				t.Fatal(err)
			}
			base := commitTestLayer(t, s, "", baseEntries)
			putImage(t, s, testImageMeta(t, []testLayer{base}, []string{"example.com/app:1"}, "1"))
			if s.DiscardedOnClose() {
				t.Error("DiscardedOnClose is true for a store holding an image")
			}
			closeStore(t, s)
			s, err = OpenWithOptions(t.Context(), dir, Options{Create: true})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Remove(t.Context(), "example.com/app:1", RemoveOptions{Now: true}); err != nil {
				t.Fatal(err)
			}
			if s.DiscardedOnClose() {
				t.Error("DiscardedOnClose is true for a store an earlier run created")
			}
			closeStore(t, s)
			if _, err := Identify(dir); err != nil {
				t.Errorf("a store an earlier run published into is gone: %v", err)
			}
		})
	}
}

// Only what cargohold made goes: a file somebody put into the new store meanwhile stays, and so does
// the dir holding it.
func TestDiscardKeepsWhatOthersPutThere(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s, err := OpenWithOptions(t.Context(), dir, Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	notes := filepath.Join(dir, "README.admin")
	if err := os.WriteFile(notes, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	closeStore(t, s)
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 || entries[0].Name() != "README.admin" {
		t.Errorf("after closing the new store without images: %v, %v; want only README.admin", entries, err)
	}
}

// A run that waits for the lock of a new store while the run that created it fails and takes it away
// starts again and creates its own: it neither fails nor writes into the removed dir.
func TestWaitingRunSurvivesDiscardedStore(t *testing.T) {
	for _, name := range []string{"missing path", "empty dir"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			if name == "empty dir" {
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			first, err := OpenWithOptions(t.Context(), dir, Options{Create: true})
			if err != nil {
				t.Fatal(err)
			}
			waiting := make(chan int, 1)
			opened := make(chan error, 1)
			var second *Store
			go func() {
				var err error
				second, err = OpenWithOptions(t.Context(), dir, Options{Create: true, Lock: LockOptions{Waiting: func(pid int) { waiting <- pid }}})
				opened <- err
			}()
			<-waiting
			closeStore(t, first) // nothing published: the store goes
			if err := <-opened; err != nil {
				t.Fatalf("the waiting run: %v", err)
			}
			base := commitTestLayer(t, second, "", baseEntries)
			putImage(t, second, testImageMeta(t, []testLayer{base}, []string{"example.com/app:1"}, "1"))
			closeStore(t, second)
			checkClean(t, dir)
			assertMode(t, filepath.Join(dir, privateDir), dirMode)
			assertMode(t, dir, dirMode)
		})
	}
}
