package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cargohold/cargohold/internal/testenv"
)

// conf refuses to register a path that is not a cargohold store, and says how to do it anyway.
func TestConfRefusesWhatIsNotAStore(t *testing.T) {
	dir := t.TempDir()
	foreign := filepath.Join(dir, "foreign")
	if err := os.MkdirAll(filepath.Join(foreign, "libpod"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "storage.conf")
	cargohold(t, "conf", "patch", "--store", foreign, "--file", conf).want(t, 2, "is Podman's own storage (libpod/ present)", "--allow-missing-store")
	if _, err := os.Stat(conf); err == nil {
		t.Error("the refused patch wrote the file")
	}
	cargohold(t, "conf", "patch", "--store", filepath.Join(dir, "typo"), "--file", conf).want(t, 2, "no such file", "--allow-missing-store")
	cargohold(t, "conf", "patch", "--store", foreign, "--file", conf, "--allow-missing-store").want(t, 0)
	// Printing a snippet only warns.
	cargohold(t, "conf", "snippet", "--store", foreign).want(t, 0, "warning:", "is Podman's own storage")
}

// conf patch --file creates the missing parent directories (a user's ~/.config/containers/).
func TestConfPatchCreatesParentDirs(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	cargohold(t, publishArgs(store)...).want(t, 0)
	conf := filepath.Join(dir, "home", ".config", "containers", "storage.conf")
	r := cargohold(t, "conf", "patch", "--store", store, "--file", conf, "--base", "/dev/null")
	r.want(t, 0)
	text, err := os.ReadFile(conf)
	if err != nil || !strings.Contains(string(text), store) {
		t.Errorf("%s: %v\n%s\nstdout: %s", conf, err, text, r.stdout)
	}
}

// The vfs snippet sets the driver Podman must use to see the store.
func TestConfSnippetOfAVFSStore(t *testing.T) {
	r := cargohold(t, "conf", "snippet", "--store", "/srv/images", "--driver", "vfs", "--allow-missing-store")
	r.want(t, 0)
	if !strings.Contains(r.stdout, "\n[storage]\ndriver = \"vfs\"\n") {
		t.Errorf("the vfs snippet does not set driver = \"vfs\":\n%s", r.stdout)
	}
	cargohold(t, "conf", "snippet", "--store", "/srv/images", "--driver", "btrfs", "--allow-missing-store").want(t, 2, "btrfs")
}

// conf dropin says whether the installed Podman reads drop-ins.
func TestConfDropinSaysWhichPodmanReadsIt(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	cargohold(t, publishArgs(store)...).want(t, 0)
	r := cargohold(t, "conf", "dropin", "--store", store, "--dir", filepath.Join(dir, "storage.conf.d"))
	r.want(t, 0)
	if !strings.Contains(r.stderr, "drop-ins") && !strings.Contains(r.stderr, "reads this drop-in") {
		t.Errorf("conf dropin says nothing about which Podman reads it:\n%s", r.stderr)
	}
}

// conf check exits 1 when Podman will not see the store.
func TestConfCheckNotSeen(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("CONTAINERS_STORAGE_CONF", filepath.Join(dir, "storage.conf"))
	if err := os.WriteFile(filepath.Join(dir, "storage.conf"), []byte("[storage]\ndriver = \"overlay\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := cargohold(t, "conf", "check", "--store", filepath.Join(dir, "store"), "--podman-version", "4.3.1", "--allow-missing-store")
	r.want(t, 1)
	if !strings.Contains(r.stdout, "result:  Podman will NOT see") {
		t.Errorf("stdout:\n%s", r.stdout)
	}
}

// conf user refuses (exit 2, nothing written) what Podman could not work with, and --remove restores
// the file byte for byte.
func TestConfUserKeepsTheFileWorkingAndRestoresIt(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	cargohold(t, publishArgs(store)...).want(t, 0)
	conf := filepath.Join(dir, "storage.conf")
	vfs := []byte("[storage]\ndriver = \"vfs\"\n")
	setUp(t, os.WriteFile(conf, vfs, 0o644))
	cargohold(t, "conf", "user", "--file", conf, "--store", store).want(t, 2, `sets driver = "vfs": Podman with it cannot read an overlay store`, "nothing was written")
	if got, _ := os.ReadFile(conf); !bytes.Equal(got, vfs) {
		t.Errorf("the refused conf user changed the file:\n%s", got)
	}

	mine := []byte("[storage]\ndriver = \"overlay\" # mine\n")
	setUp(t, os.WriteFile(conf, mine, 0o644))
	r := cargohold(t, "conf", "user", "--file", conf, "--store", store)
	r.want(t, 0)
	if !strings.Contains(r.stdout, "added "+store+" to "+conf) {
		t.Errorf("stdout: %s", r.stdout)
	}
	r = cargohold(t, "conf", "user", "--file", conf, "--store", store, "--remove")
	r.want(t, 0)
	if !strings.Contains(r.stdout, "restored as it was before cargohold") {
		t.Errorf("stdout: %s", r.stdout)
	}
	if got, _ := os.ReadFile(conf); !bytes.Equal(got, mine) {
		t.Errorf("--remove did not restore the file:\n%s", got)
	}

	setUp(t, os.Remove(conf))
	cargohold(t, "conf", "user", "--file", conf, "--store", store).want(t, 0)
	r = cargohold(t, "conf", "user", "--file", conf, "--store", store, "--remove")
	r.want(t, 0)
	if _, err := os.Stat(conf); !errors.Is(err, os.ErrNotExist) || !strings.Contains(r.stdout, "deleted "+conf+", which cargohold had created") {
		t.Errorf("the file cargohold created is still there (%v): %s", err, r.stdout)
	}
}

// conf check says "Podman will FAIL" (exit 1) when the configuration makes every podman command
// fail, here because Podman's own storage was made with the vfs driver.
func TestConfCheckPodmanWillFail(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	setUp(t, os.Mkdir(store, 0o755))
	graph := filepath.Join(dir, "graph")
	setUp(t, os.MkdirAll(filepath.Join(graph, "vfs-layers"), 0o700))
	conf := filepath.Join(dir, "storage.conf")
	setUp(t, os.WriteFile(conf, []byte("[storage]\ndriver = \"overlay\"\nrunroot = \"/run/x\"\ngraphroot = \""+graph+
		"\"\n[storage.options]\nadditionalimagestores = [\""+store+"\"]\n"), 0o644))
	t.Setenv("CONTAINERS_STORAGE_CONF", conf)
	r := cargohold(t, "conf", "check", "--store", store, "--podman-version", "4.3.1", "--allow-missing-store")
	r.want(t, 1)
	for _, want := range []string{"storage: " + graph + " (made with the vfs driver, which Podman keeps)",
		"result:  Podman will FAIL: every podman command of this user exits with an error:",
		`"vfs driver does not support overlay.imagestore options"`, "result:  Podman will NOT see " + store} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout does not say %q:\n%s", want, r.stdout)
		}
	}
	cargohold(t, "conf", "check", "--store", store, "--user", "no-such-user-here", "--podman-version", "4.3.1", "--allow-missing-store").
		want(t, 2, "no-such-user-here")
}

// setUp stops the test when preparing its files failed: what follows would test something else.
func setUp(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A store reached through a symlinked parent: every command acts on and prints its real path, check
// finds it healthy, and conf patch lists it once whichever spelling is given.
func TestStoreThroughSymlinkedParent(t *testing.T) {
	testenv.RequireRoot(t)
	base := t.TempDir()
	setUp(t, os.Mkdir(filepath.Join(base, "real"), 0o755))
	real := filepath.Join(base, "real", "store")
	cargohold(t, publishArgs(real)...).want(t, 0)
	setUp(t, os.Symlink(filepath.Join(base, "real"), filepath.Join(base, "link")))
	link := filepath.Join(base, "link", "store")
	real, err := filepath.EvalSymlinks(real)
	setUp(t, err)

	r := cargohold(t, "check", "--store", link)
	r.want(t, 0)
	if !strings.HasPrefix(r.stdout, real+": 1 image,") {
		t.Errorf("check does not report the real path %s:\n%s", real, r.stdout)
	}
	conf := filepath.Join(base, "storage.conf")
	r = cargohold(t, "conf", "patch", "--store", link, "--file", conf, "--base", "/dev/null")
	r.want(t, 0)
	if !strings.Contains(r.stdout, "listing "+real) {
		t.Errorf("conf patch does not register the real path:\n%s", r.stdout)
	}
	r = cargohold(t, "conf", "patch", "--store", real, "--file", conf)
	r.want(t, 0)
	if !strings.HasPrefix(r.stdout, "unchanged") {
		t.Errorf("the real path was added again:\n%s", r.stdout)
	}
	cargohold(t, "ls", "--store", link).want(t, 0)
	cargohold(t, "gc", "--store", link).want(t, 0)
}
