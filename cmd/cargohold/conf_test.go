package main

import (
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
