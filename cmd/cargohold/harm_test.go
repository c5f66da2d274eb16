package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cargohold/cargohold/internal/testenv"
	"github.com/cargohold/cargohold/internal/testimage"
)

// Every command, pointed at what is not a store it may write (a user's home, Podman's own graphroot,
// a typo'd path) or asked for the other driver of a store, changes no byte, mode, owner or time there
// and creates nothing (issue 13: "do no harm as root").
func TestEveryCommandLeavesWhatIsNotItsStoreAlone(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	targets := map[string]string{
		"home":      makeTree(t, filepath.Join(dir, "home"), map[string]string{".ssh/id_rsa": "secret", "notes.txt": "mine"}),
		"graphroot": makeTree(t, filepath.Join(dir, "graphroot"), map[string]string{"libpod/bolt_state.db": "db", "overlay-images/images.json": "[]", "storage.lock": ""}),
		"typo":      filepath.Join(dir, "typo", "stroe"),
		"vfs store": filepath.Join(dir, "vfs-store"),
	}
	if err := os.Chmod(targets["home"], 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(targets["home"], ".ssh/id_rsa"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Dir(targets["typo"]), 0o755); err != nil {
		t.Fatal(err)
	}
	cargohold(t, publishArgs(targets["vfs store"], "--driver", "vfs")...).want(t, 0)
	confDir := t.TempDir() // where the conf commands may write their own files

	for name, target := range targets {
		before := treeState(t, target) // the target and what is beside it: a typo'd path must not appear
		for _, args := range harmlessRuns(name, target, confDir) {
			r := cargohold(t, args...)
			if diffs := testimage.DiffTrees(before, treeState(t, target)); len(diffs) > 0 {
				t.Fatalf("%s: cargohold %s changed %s (exit %d, stderr %s):\n%s",
					name, strings.Join(args, " "), target, r.code, r.stderr, strings.Join(diffs, "\n"))
			}
			if writes(args) && r.code == 0 {
				t.Errorf("%s: cargohold %s exited 0; want a refusal", name, strings.Join(args, " "))
			}
		}
	}
}

// harmlessRuns are the command lines that must leave target as it is: for a store of the vfs
// driver, the ones that ask for overlay and the read-only ones; for anything else, every command.
func harmlessRuns(name, target, confDir string) [][]string {
	conf := func(sub string, extra ...string) []string {
		return append([]string{"conf", sub, "--store", target}, extra...)
	}
	confFiles := [][]string{
		conf("patch", "--file", filepath.Join(confDir, "storage.conf"), "--base", "/dev/null"),
		conf("dropin", "--dir", filepath.Join(confDir, "storage.conf.d")),
		conf("user", "--file", filepath.Join(confDir, "user.conf")),
		conf("snippet"), conf("check"),
	}
	readOnly := [][]string{
		{"ls", "--store", target}, {"inspect", "--store", target, "hello"}, {"check", "--store", target},
		{"check", "--deep", "--store", target},
	}
	if name == "vfs store" {
		runs := append(readOnly, publishArgs(target, "--driver", "overlay"))
		for _, c := range confFiles {
			runs = append(runs, append(c, "--driver", "overlay"))
		}
		return runs
	}
	runs := append(readOnly, confFiles...)
	runs = append(runs, []string{"rm", "--store", target, "hello"}, []string{"rm", "--dry-run", "--store", target, "hello"},
		[]string{"gc", "--store", target}, []string{"gc", "--dry-run", "--store", target},
		[]string{"check", "--repair", "--store", target})
	if name != "typo" { // publish may create a store where nothing is (its parents too)
		runs = append(runs, publishArgs(target))
	}
	return runs
}

// writes tells the command lines that would write the target if it were their store.
func writes(args []string) bool {
	switch args[0] {
	case "publish", "gc":
		return true
	case "rm":
		return !slices.Contains(args, "--dry-run")
	case "check":
		return slices.Contains(args, "--repair")
	case "conf":
		return args[1] == "patch" || args[1] == "dropin" || args[1] == "user"
	}
	return false
}

// makeTree writes files (path → content) under root and returns root.
func makeTree(t *testing.T, root string, files map[string]string) string {
	t.Helper()
	for rel, content := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func treeState(t *testing.T, root string) map[string]testimage.FileState {
	t.Helper()
	state, err := testimage.TreeState(root)
	if err != nil {
		t.Fatal(err)
	}
	return state
}
