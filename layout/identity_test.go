package layout

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cargohold/cargohold/internal/testenv"
	"github.com/cargohold/cargohold/internal/testimage"
	"golang.org/x/sys/unix"
)

// treeState is testimage.TreeState of root, for tests: every path under root and beside it.
func treeState(t *testing.T, root string) map[string]testimage.FileState {
	t.Helper()
	state, err := testimage.TreeState(root)
	if err != nil {
		t.Fatal(err)
	}
	return state
}

// writeTree makes files (path → content; a trailing "/" makes a dir) with the given modes.
func writeTree(t *testing.T, root string, files map[string]string, modes map[string]fs.FileMode) {
	t.Helper()
	for p, data := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
		} else if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for p, m := range modes {
		if err := os.Chmod(filepath.Join(root, p), m); err != nil {
			t.Fatal(err)
		}
	}
}

// foreignDir is a home directory: private files that a chmod a+r would leak.
func foreignDir(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "home")
	writeTree(t, dir, map[string]string{".ssh/id_rsa": "secret key", "notes.txt": "mine"},
		map[string]fs.FileMode{".": 0o700, ".ssh": 0o700, ".ssh/id_rsa": 0o600})
	return dir
}

// podmanGraphroot is what /var/lib/containers/storage holds.
func podmanGraphroot(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "storage")
	writeTree(t, dir, map[string]string{
		"libpod/bolt_state.db":               "bolt",
		"storage.lock":                       "",
		"overlay/l/":                         "",
		"overlay-images/images.json":         "[]",
		"overlay-images/images.lock":         "",
		"overlay-layers/layers.json":         "[]",
		"overlay-layers/layers.lock":         "",
		"overlay-containers/containers.json": "[]",
	}, map[string]fs.FileMode{".": 0o700, "libpod": 0o700, "overlay": 0o700})
	return dir
}

// entryPoints are the library calls the commands make, each reporting its error.
var entryPoints = []struct {
	name   string
	create bool // may create a store (publish)
	call   func(dir string, driver Driver) error
}{
	{"publish (OpenWithOptions Create)", true, func(dir string, d Driver) error {
		return openAndClose(dir, Options{Create: true, Driver: d}, nil)
	}},
	{"rm (OpenWithOptions, Remove)", false, func(dir string, _ Driver) error {
		return openAndClose(dir, Options{}, func(s *Store) error { _, err := s.Remove(context.Background(), "app", RemoveOptions{}); return err })
	}},
	{"gc (OpenWithOptions, GC)", false, func(dir string, _ Driver) error {
		return openAndClose(dir, Options{Lock: LockOptions{NoWait: true}}, func(s *Store) error {
			_, err := s.GC(context.Background(), 0, time.Now(), false)
			return err
		})
	}},
	{"check --repair (OpenWithOptions, Repair)", false, func(dir string, _ Driver) error {
		return openAndClose(dir, Options{}, func(s *Store) error { _, err := s.Repair(context.Background()); return err })
	}},
	{"ls/inspect (Read)", false, func(dir string, _ Driver) error { _, err := Read(dir); return err }},
	{"check (Check)", false, func(dir string, _ Driver) error {
		_, err := Check(context.Background(), dir, CheckOptions{Deep: true})
		return err
	}},
	{"conf (Identify)", false, func(dir string, _ Driver) error { _, err := Identify(dir); return err }},
}

func openAndClose(dir string, opts Options, then func(*Store) error) error {
	s, err := OpenWithOptions(context.Background(), dir, opts)
	if err != nil {
		return err
	}
	if then != nil {
		err = then(s)
	}
	return errors.Join(err, s.Close())
}

// Every command's library call on a path that is not a cargohold store is refused with ErrNotStore,
// says what it found, and changes no byte, mode, owner or time there and creates nothing.
func TestNotAStoreIsNeverWritten(t *testing.T) {
	for _, tc := range []struct {
		name string
		dir  func(t *testing.T) string
		says string
	}{
		{"foreign directory", foreignDir, "is a non-empty directory that is not a cargohold store"},
		{"Podman's graphroot", podmanGraphroot, "is Podman's own storage (libpod/ present); give a new directory"},
		{"typo'd path", func(t *testing.T) string { return filepath.Join(t.TempDir(), "stroe") }, "does not exist"},
		{"empty directory", func(t *testing.T) string { return t.TempDir() }, "is an empty directory"},
	} {
		for _, ep := range entryPoints {
			if ep.create && (tc.name == "typo'd path" || tc.name == "empty directory") {
				continue // where publish creates a store (TestCreateMakesParents)
			}
			t.Run(tc.name+"/"+ep.name, func(t *testing.T) {
				dir := tc.dir(t)
				before := treeState(t, dir)
				err := ep.call(dir, "")
				if !errors.Is(err, ErrNotStore) {
					t.Fatalf("error %v, want ErrNotStore", err)
				}
				if want := dir + " " + tc.says; !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
				if diffs := testimage.DiffTrees(before, treeState(t, dir)); len(diffs) > 0 {
					t.Errorf("changed: %v", diffs)
				}
			})
		}
	}
}

// A store of the other driver: publishing with the wrong driver is refused before any write, and
// what only reads changes nothing.
func TestOtherDriverStoreIsNeverWritten(t *testing.T) {
	for _, have := range []Driver{Overlay, VFS} {
		other := map[Driver]Driver{Overlay: VFS, VFS: Overlay}[have]
		dir := filepath.Join(t.TempDir(), "store")
		s, err := OpenWithOptions(t.Context(), dir, Options{Create: true, Driver: have})
		if err != nil {
			t.Fatal(err)
		}
		base := commitTestLayer(t, s, "", baseEntries)
		putImage(t, s, testImageMeta(t, []testLayer{base}, []string{"example.com/app:1"}, "1"))
		closeStore(t, s)
		for _, ep := range entryPoints {
			if ep.name != "publish (OpenWithOptions Create)" && !strings.Contains(ep.name, "Read") &&
				!strings.Contains(ep.name, "Check") && !strings.Contains(ep.name, "Identify") {
				continue // rm, gc and repair write the store whatever its driver: it is a cargohold store
			}
			t.Run(string(have)+"/"+ep.name, func(t *testing.T) {
				before := treeState(t, dir)
				err := ep.call(dir, other)
				if ep.create && !errors.Is(err, ErrWrongDriver) {
					t.Errorf("error %v, want ErrWrongDriver", err)
				} else if !ep.create && err != nil {
					t.Errorf("reading a %s store: %v", have, err)
				}
				if diffs := testimage.DiffTrees(before, treeState(t, dir)); len(diffs) > 0 {
					t.Errorf("changed: %v", diffs)
				}
			})
		}
		if d, err := Identify(dir); err != nil || d != have {
			t.Errorf("Identify = %v, %v; want %s", d, err, have)
		}
	}
}

// A store written by a newer cargohold is refused for writing, before any write; reading it works
// (Podman's files keep Podman's format).
func TestNewerFormatIsNotWritten(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	closeStore(t, openStore(t, dir))
	if err := os.WriteFile(filepath.Join(dir, markerName), []byte(`{"format":99,"driver":"overlay"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	before := treeState(t, dir)
	for _, ep := range entryPoints {
		err := ep.call(dir, "")
		switch {
		case strings.Contains(ep.name, "OpenWithOptions") && !errors.Is(err, ErrNewerFormat):
			t.Errorf("%s: %v, want ErrNewerFormat", ep.name, err)
		case !strings.Contains(ep.name, "OpenWithOptions") && err != nil:
			t.Errorf("%s: %v, want it read", ep.name, err)
		}
	}
	if diffs := testimage.DiffTrees(before, treeState(t, dir)); len(diffs) > 0 {
		t.Errorf("changed: %v", diffs)
	}
}

// A store written before markers is recognised by .cargohold/, and gets its marker on the next write.
func TestStoreWithoutMarkerGetsOne(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s := openStore(t, dir)
	base := commitTestLayer(t, s, "", baseEntries)
	putImage(t, s, testImageMeta(t, []testLayer{base}, []string{"example.com/app:1"}, "1"))
	closeStore(t, s)
	if err := os.Remove(filepath.Join(dir, markerName)); err != nil {
		t.Fatal(err)
	}
	if d, err := Identify(dir); err != nil || d != Overlay {
		t.Fatalf("Identify of a store without marker = %v, %v", d, err)
	}
	if snap, err := Read(dir); err != nil || len(snap.Images) != 1 {
		t.Fatalf("Read of a store without marker: %v", err)
	}
	closeStore(t, openStore(t, dir))
	var m marker
	readJSONFile(t, filepath.Join(dir, markerName), &m)
	if m != (marker{Format: formatVersion, Driver: Overlay}) {
		t.Errorf("marker %+v", m)
	}
}

// check --repair widens only the store's own files: a layer's file keeps the image's 0700, and the
// store's metadata gets back what readers need.
func TestRepairKeepsImageModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s := openStore(t, dir)
	base := commitTestLayer(t, s, "", []testEntry{
		{name: "private", dir: true, mode: 0o700},
		{name: "private/key", data: "k", mode: 0o600},
	})
	img := testImageMeta(t, []testLayer{base}, []string{"example.com/app:1"}, "1")
	putImage(t, s, img)
	closeStore(t, s)
	diff := filepath.Join(dir, "overlay", base.meta.ID, "diff")
	imagesJSON := filepath.Join(dir, "overlay-images", "images.json")
	if err := os.Chmod(imagesJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir)
	done, err := s.Repair(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	closeStore(t, s)
	if len(done) != 1 || !strings.Contains(done[0], "images.json") {
		t.Errorf("Repair did %q, want images.json only", done)
	}
	assertMode(t, imagesJSON, 0o644)
	assertMode(t, filepath.Join(diff, "private"), 0o700)
	assertMode(t, filepath.Join(diff, "private/key"), 0o600)
}

// Without the privileges a publish needs, creating a store is refused before anything is created,
// with the missing capabilities named (instead of a store created empty and an fchown error per image).
func TestCreateNeedsPrivileges(t *testing.T) {
	if dir := os.Getenv("CARGOHOLD_TEST_NO_CHOWN"); dir != "" {
		err := openAndClose(dir, Options{Create: true}, nil)
		if !errors.Is(err, ErrNotPrivileged) || !strings.Contains(err.Error(), "CAP_CHOWN") {
			t.Fatalf("creating a store without CAP_CHOWN: %v, want ErrNotPrivileged naming CAP_CHOWN", err)
		}
		return
	}
	testenv.RequireRoot(t) // to drop one capability
	setpriv := testenv.LookPath(t, "setpriv", "util-linux")
	dir := filepath.Join(t.TempDir(), "new", "store")
	before := treeState(t, filepath.Dir(dir))
	cmd := exec.Command(setpriv, "--inh-caps=-chown", "--bounding-set=-chown", "--",
		os.Args[0], "-test.run=^TestCreateNeedsPrivileges$", "-test.v")
	cmd.Env = append(os.Environ(), "CARGOHOLD_TEST_NO_CHOWN="+dir)
	out, err := cmd.CombinedOutput()
	t.Logf("without CAP_CHOWN:\n%s", out)
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestCreateNeedsPrivileges")) {
		t.Fatalf("the test without CAP_CHOWN failed: %v", err)
	}
	if diffs := testimage.DiffTrees(before, treeState(t, filepath.Dir(dir))); len(diffs) > 0 {
		t.Errorf("changed: %v", diffs)
	}
}

// A store on a read-only filesystem is refused once, with one clear message that names the path once.
func TestReadOnlyFilesystem(t *testing.T) {
	testenv.RequireRoot(t) // to mount a read-only tmpfs
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", unix.MS_RDONLY, "size=1m"); err != nil {
		testenv.Missing(t, "cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(mnt, 0) })
	for _, dir := range []string{filepath.Join(mnt, "store"), mnt} {
		err := openAndClose(dir, Options{Create: true}, nil)
		if err == nil {
			t.Fatalf("%s: a store was opened on a read-only filesystem", dir)
		}
		if !strings.Contains(err.Error(), "read-only file") || strings.Count(err.Error(), mnt) != 1 {
			t.Errorf("%s: %q, want one mention of the path and the read-only filesystem", dir, err)
		}
	}
}

// Only the host's own ID map counts as real root: under unshare -r or rootless Podman the process
// has every capability, but not over the host's files.
func TestHostUIDMap(t *testing.T) {
	for _, tc := range []struct {
		uidMap string
		host   bool
	}{
		{"         0          0 4294967295\n", true},
		{"         0          0          1\n", false}, // unshare -r as root
		{"         0       1000          1\n", false}, // unshare -r as a user
		{"0 1000 1\n1 100000 65536\n", false},         // rootless Podman
		{"         0     100000      65536\n", false}, // a remapped container
		{"", false},
	} {
		if got := hostUIDMap(tc.uidMap); got != tc.host {
			t.Errorf("hostUIDMap(%q) = %v, want %v", tc.uidMap, got, tc.host)
		}
	}
}
