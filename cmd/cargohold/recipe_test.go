package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cargohold/cargohold/internal/testenv"
)

// Two recipe entries that claim one name are refused before anything runs (exit 2), naming both
// entries' lines: the name would move between the two images on every run.
func TestRecipeNameClaimedTwiceIsRefused(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	path := writeRecipe(t, `store = "`+store+`"
[[image]]
ref = "`+ociRef("hello:1")+`"
names = ["localhost/test/app:stable"]

[[image]]
ref = "`+ociRef("other:1")+`"
names = ["localhost/test/app:stable"]
`)
	r := cargohold(t, "publish", "--insecure-policy", "--recipe", path)
	r.want(t, 2, "recipe "+path, "[[image]] at line 2", "[[image]] at line 6", "both claim the name localhost/test/app:stable")
	if _, err := os.Stat(store); err == nil {
		t.Error("the store was created although the recipe was refused")
	}
}

// A relative store in a recipe is relative to the recipe's directory, whatever the current
// directory (a cron run's is "/"), and each output line names it.
func TestRecipeRelativeStoreIsTheRecipesDirectorys(t *testing.T) {
	testenv.RequireRoot(t)
	recipeDir, cwd := t.TempDir(), t.TempDir()
	path := filepath.Join(recipeDir, "images.toml")
	text := "store = \"relstore\"\n[[image]]\nref = \"" + ociRef("hello:1") + "\"\nnames = [\"localhost/test/hello:1\"]\n"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(cwd)
	r := cargohold(t, "publish", "--insecure-policy", "--recipe", path)
	r.want(t, 0)
	want := filepath.Join(recipeDir, "relstore")
	if !strings.Contains(r.stdout, "localhost/test/hello:1") || !strings.Contains(r.stdout, "["+want+"]") {
		t.Errorf("the output does not name the store %s:\n%s", want, r.stdout)
	}
	if ls := cargohold(t, "ls", "--store", want); !strings.Contains(ls.stdout, "localhost/test/hello:1") {
		t.Errorf("%s lacks the image:\n%s%s", want, ls.stdout, ls.stderr)
	}
	if _, err := os.Stat(filepath.Join(cwd, "relstore")); err == nil {
		t.Error("the store was made in the current directory")
	}
}

// An image the recipe lists is never reported as extra, also when it failed in this run (a
// registry's authentication failed once): its published version is still the recipe's.
func TestListedImageThatFailedIsNotExtra(t *testing.T) {
	testenv.RequireRoot(t)
	store := filepath.Join(t.TempDir(), "store")
	cargohold(t, "publish", "--insecure-policy", "--recipe", writeRecipe(t, recipeOf(store, "hello:1"))).want(t, 0)

	failing := writeRecipe(t, "store = \""+store+"\"\n[[image]]\nref = \"oci:"+filepath.Join(layouts, "none")+":1\"\nnames = [\"localhost/test/hello:1\"]\n")
	for _, extra := range [][]string{nil, {"--prune"}} {
		r := cargohold(t, append([]string{"publish", "--insecure-policy", "--recipe", failing}, extra...)...)
		r.want(t, 1)
		if out := r.stdout + r.stderr; strings.Contains(out, "extra") || strings.Contains(out, "not pruning") {
			t.Errorf("publish %v reports the listed name as extra:\n%s", extra, out)
		}
	}
	if ls := cargohold(t, "ls", "--store", store); !strings.Contains(ls.stdout, "localhost/test/hello:1") {
		t.Errorf("the published image went:\n%s", ls.stdout)
	}
}
