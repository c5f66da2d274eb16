package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// Every command, pointed at what is not a store it may write (a user's home, Podman's own graphroot,
// a typo'd path) or asked for the other driver of a store, changes no byte, mode, owner or time there
// and creates nothing (issue 13: "do no harm as root").
func TestEveryCommandLeavesWhatIsNotItsStoreAlone(t *testing.T) {
	requireRoot(t)
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
		// What the typo'd path's parent holds stands for the path itself: nothing may appear there.
		watched := target
		if name == "typo" {
			watched = filepath.Dir(target)
		}
		before := treeSums(t, watched)
		for _, args := range harmlessRuns(name, target, confDir) {
			r := cargohold(t, args...)
			if after := treeSums(t, watched); !slices.Equal(before, after) {
				t.Fatalf("%s: cargohold %s changed %s (exit %d, stderr %s):\nbefore %q\nafter  %q",
					name, strings.Join(args, " "), watched, r.code, r.stderr, before, after)
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

// treeSums lists every path under root with its type, mode, owner, size, mtime, link target and
// content digest, sorted: two listings are equal only if nothing under root changed.
func treeSums(t *testing.T, root string) []string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		var extra string
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			extra, err = os.Readlink(path)
		case fi.Mode().IsRegular():
			extra, err = fileDigest(path)
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		lines = append(lines, fmt.Sprintf("%s %v %d:%d %d %d.%d %s", rel, fi.Mode(), st.Uid, st.Gid, fi.Size(),
			st.Mtim.Sec, st.Mtim.Nsec, extra))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(lines)
	return lines
}

func fileDigest(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}
