package layout

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolveDir(t *testing.T) {
	base := t.TempDir()
	real := filepath.Join(base, "real")
	setUpDir(t, os.MkdirAll(filepath.Join(real, "store"), 0o755))
	setUpDir(t, os.Symlink(real, filepath.Join(base, "link")))
	setUpDir(t, os.Symlink(filepath.Join(real, "store"), filepath.Join(base, "store-link")))
	realBase, err := filepath.EvalSymlinks(base) // the temp dir may itself be reached through a link
	setUpDir(t, err)
	for given, want := range map[string]string{
		filepath.Join(base, "real/store"):          filepath.Join(realBase, "real/store"),
		filepath.Join(base, "link/store"):          filepath.Join(realBase, "real/store"),
		filepath.Join(base, "store-link"):          filepath.Join(realBase, "real/store"),
		filepath.Join(base, "link/new/deeper"):     filepath.Join(realBase, "real/new/deeper"), // not there yet
		filepath.Join(base, "link/./store/../new"): filepath.Join(realBase, "real/new"),
	} {
		t.Run(strings.TrimPrefix(given, base+"/"), func(t *testing.T) {
			if got, err := ResolveDir(given); err != nil || got != want {
				t.Errorf("ResolveDir(%s) = %s, %v; want %s", given, got, err, want)
			}
		})
	}
}

// A store reached through a symlinked parent is one healthy store, reported by its real path: Check
// used to report every l/ link as broken (Podman resolves them to the real path).
func TestStoreThroughSymlink(t *testing.T) {
	base := t.TempDir()
	real := filepath.Join(base, "real")
	setUpDir(t, os.Mkdir(real, 0o755))
	publishTestImages(t, filepath.Join(real, "store"))
	setUpDir(t, os.Symlink(real, filepath.Join(base, "link")))
	via := filepath.Join(base, "link", "store")
	want, err := filepath.EvalSymlinks(filepath.Join(real, "store"))
	setUpDir(t, err)

	r, err := Check(context.Background(), via, CheckOptions{Deep: true})
	if err != nil || !r.OK() {
		t.Fatalf("Check through the link: %v, %v", r, err)
	}
	snap, err := Read(via)
	if err != nil || snap.Dir() != want || len(snap.Images) == 0 {
		t.Errorf("Read through the link: dir %q, %d images, %v; want dir %s", snap.Dir(), len(snap.Images), err, want)
	}
	if d, err := Identify(via); err != nil || d != Overlay {
		t.Errorf("Identify through the link: %s, %v", d, err)
	}
	s, err := OpenWithOptions(context.Background(), via, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Dir() != want {
		t.Errorf("opened through the link: Dir() = %s, want %s", s.Dir(), want)
	}
	closeStore(t, s)
}

func setUpDir(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
