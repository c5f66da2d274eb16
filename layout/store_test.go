package layout

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.podman.io/storage/pkg/lockfile"
)

func TestOpenCreatesSkeleton(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s := openStore(t, dir)
	if s.Dir() != dir {
		t.Errorf("Dir() = %q, want %q", s.Dir(), dir)
	}
	for _, d := range []string{"", "overlay", "overlay/l", "overlay-layers", "overlay-images", ".cargohold"} {
		p := filepath.Join(dir, d)
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.IsDir() {
			t.Errorf("%s is not a directory", p)
		}
		assertMode(t, p, 0o755)
	}
	for _, f := range []string{"overlay-layers/layers.json", "overlay-images/images.json"} {
		p := filepath.Join(dir, f)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if string(data) != "[]" {
			t.Errorf("%s = %q, want []", f, data)
		}
		assertMode(t, p, 0o644)
	}
	for _, f := range []string{"overlay-layers/layers.lock", "overlay-images/images.lock"} {
		assertMode(t, filepath.Join(dir, f), 0o644)
	}
	if s.HasLayer("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef") {
		t.Error("an empty store has a layer")
	}
	if imgs := s.Images(); len(imgs) != 0 {
		t.Errorf("an empty store has images %v", imgs)
	}
}

// A new store's parents are created (a templated path such as /srv/stores/{arch}), with Create only.
func TestCreateMakesParents(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing", "store")
	if s, err := OpenWithOptions(t.Context(), dir, Options{}); !errors.Is(err, ErrNotStore) {
		if err == nil {
			closeStore(t, s)
		}
		t.Fatalf("opening a missing path without Create: %v, want ErrNotStore", err)
	}
	if _, err := os.Stat(filepath.Dir(dir)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("opening without Create created the parent: %v", err)
	}
	openStore(t, dir)
	if d, err := Identify(dir); err != nil || d != Overlay {
		t.Errorf("Identify = %v, %v; want overlay", d, err)
	}
}

// A lock file's content must be a last-write token as the lockfile package writes it (64 bytes:
// time, counter, pid, random), and change with every metadata write so that readers reload.
func TestLockFilesAreLastWriteTokens(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	layersLock := filepath.Join(dir, "overlay-layers", "layers.lock")
	imagesLock := filepath.Join(dir, "overlay-images", "images.lock")
	for _, p := range []string{layersLock, imagesLock} {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) != 64 {
			t.Fatalf("%s has %d bytes, want a 64-byte token", p, len(data))
		}
		if pid := binary.LittleEndian.Uint32(data[16:20]); pid != uint32(os.Getpid()) {
			t.Errorf("%s: token pid %d, want %d", p, pid, os.Getpid())
		}
		if ts := time.Unix(0, int64(binary.LittleEndian.Uint64(data[0:8]))); time.Since(ts) > time.Hour || time.Since(ts) < 0 {
			t.Errorf("%s: token time %v is not now", p, ts)
		}
	}

	// Read the tokens as a reader does (read-only lock file, read lock) before and after a write.
	lastWrite := func(p string) lockfile.LastWrite {
		l, err := lockfile.GetROLockFile(p)
		if err != nil {
			t.Fatal(err)
		}
		l.RLock()
		defer l.Unlock()
		lw, err := l.GetLastWrite()
		if err != nil {
			t.Fatal(err)
		}
		return lw
	}
	modified := func(p string, since lockfile.LastWrite) bool {
		l, err := lockfile.GetROLockFile(p)
		if err != nil {
			t.Fatal(err)
		}
		l.RLock()
		defer l.Unlock()
		_, mod, err := l.ModifiedSince(since)
		if err != nil {
			t.Fatal(err)
		}
		return mod
	}
	layersBefore, imagesBefore := lastWrite(layersLock), lastWrite(imagesLock)
	base := commitTestLayer(t, s, "", baseEntries)
	if !modified(layersLock, layersBefore) {
		t.Error("CommitLayer did not record a write on layers.lock")
	}
	if modified(imagesLock, imagesBefore) {
		t.Error("CommitLayer recorded a write on images.lock")
	}
	putImage(t, s, testImageMeta(t, []testLayer{base}, []string{"example.com/a:1"}, "a"))
	if !modified(imagesLock, imagesBefore) {
		t.Error("PutImage did not record a write on images.lock")
	}

	// Reopening keeps existing tokens (readers would reload for nothing otherwise).
	closeStore(t, s)
	layersAfter := lastWrite(layersLock)
	openStore(t, dir)
	if modified(layersLock, layersAfter) {
		t.Error("Open rewrote an existing lock file")
	}
}

func TestOpenRemovesLeftovers(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	base := commitTestLayer(t, s, "", baseEntries)
	img := testImageMeta(t, []testLayer{base}, []string{"example.com/a:1"}, "a")
	putImage(t, s, img)
	staged, _ := stageTar(t, s, childEntries) // never committed: the run "crashed"
	closeStore(t, s)

	leftovers := []string{
		"overlay-layers/.tmp-layers.json-0123",
		"overlay-images/.tmp-images.json-4567",
		"overlay-images/" + img.ID + "/.tmp-manifest-89ab",
	}
	for _, f := range leftovers {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	stageDir := filepath.Dir(filepath.Dir(staged.DiffDir()))
	if _, err := os.Stat(stageDir); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, dir)
	for _, p := range append(leftovers, stageDir) {
		if _, err := os.Lstat(filepath.Join(dir, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("leftover %s still there (%v)", p, err)
		}
	}
	if _, err := os.Lstat(stageDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("staging dir %s still there", stageDir)
	}
	if !s.HasLayer(base.meta.ID) {
		t.Error("committed layer lost")
	}
	if _, ok := s.Image(img.ID); !ok {
		t.Error("image lost")
	}
	if err := staged.Discard(); err != nil {
		t.Errorf("Discard of a staging dir already removed: %v", err)
	}
}

func TestWriterLockExcludesSecondOpen(t *testing.T) {
	dir := t.TempDir()
	s1 := openStore(t, dir)
	opened := make(chan *Store)
	go func() {
		s2, err := OpenWithOptions(t.Context(), dir, Options{})
		if err != nil {
			t.Error(err)
		}
		opened <- s2
	}()
	select {
	case s2 := <-opened:
		_ = s2.Close()
		t.Fatal("a second Open of the same store did not wait for the first to close")
	case <-time.After(300 * time.Millisecond):
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	if s2 := <-opened; s2 != nil {
		closeStore(t, s2)
	}
}
