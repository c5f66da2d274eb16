package publish

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Complete loads the recipe file (relative paths in it are the file's) and takes REGISTRY_AUTH_FILE,
// which then serves the images nothing else names an auth file for; a broken recipe names its file.
func TestInputComplete(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "site.toml")
	if err := os.WriteFile(file, []byte("store = \"images\"\n[[image]]\nref = \"alpine\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	auth := filepath.Join(dir, "auth.json")
	if err := os.WriteFile(auth, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("REGISTRY_AUTH_FILE", auth)
	var in Input
	if err := in.Complete(file); err != nil {
		t.Fatal(err)
	}
	if in.Recipe == nil || in.Recipe.Path != file || in.EnvAuthFile != auth {
		t.Fatalf("completed input: recipe %+v, env auth file %q", in.Recipe, in.EnvAuthFile)
	}
	p, err := New(in)
	if err != nil {
		t.Fatal(err)
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Stores[0].Dir; got != filepath.Join(real, "images") {
		t.Errorf("store %s, want the recipe's relative store beside the recipe", got)
	}
	if got := mustTargets(t, in)[0].req.Options.AuthFile; got != auth {
		t.Errorf("auth file %q, want REGISTRY_AUTH_FILE's", got)
	}

	var bare Input
	t.Setenv("REGISTRY_AUTH_FILE", "")
	if err := bare.Complete(""); err != nil || bare.Recipe != nil || bare.EnvAuthFile != "" {
		t.Errorf("without a recipe or REGISTRY_AUTH_FILE: %+v, %v", bare, err)
	}
	broken := filepath.Join(dir, "broken.toml")
	if err := os.WriteFile(broken, []byte("[[image]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := bare.Complete(broken); err == nil || !strings.Contains(err.Error(), broken) {
		t.Errorf("a broken recipe: %v; want an error naming %s", err, broken)
	}
	if err := bare.Complete(filepath.Join(dir, "missing.toml")); err == nil || !strings.Contains(err.Error(), "missing.toml") {
		t.Errorf("a missing recipe: %v; want an error naming it", err)
	}
}
