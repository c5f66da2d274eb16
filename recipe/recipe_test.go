package recipe

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const good = `# nightly images
store = "/srv/images"

[defaults]
platform = "linux/amd64"
tls-verify = false

[[image]]
ref = "docker.io/library/alpine:3.20"
names = ["site/alpine:stable"]

[[image]]
ref = "registry.example.org/lab/tool:1.4"
platform = "linux/arm64"
tls-verify = true
authfile = "/etc/cargohold/lab.json"
`

func TestParseGood(t *testing.T) {
	r, err := Parse(good)
	if err != nil {
		t.Fatal(err)
	}
	if r.Store != "/srv/images" || len(r.Images) != 2 {
		t.Fatalf("got %+v", r)
	}
	first := r.Images[0].Over(r.Defaults)
	if first.Platform != "linux/amd64" || first.TLSVerify == nil || *first.TLSVerify || first.AuthFile != "" {
		t.Errorf("first image inherits defaults, got %+v", first)
	}
	if got := r.Images[0].Names; len(got) != 1 || got[0] != "site/alpine:stable" {
		t.Errorf("names: %v", got)
	}
	second := r.Images[1].Over(r.Defaults)
	if second.Platform != "linux/arm64" || !*second.TLSVerify || second.AuthFile != "/etc/cargohold/lab.json" {
		t.Errorf("second image overrides defaults, got %+v", second)
	}
}

func TestUnknownKeysNameTheirLine(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
	}{
		{"top level", "stor = \"/x\"\n[[image]]\nref = \"a\"\n", `line 1: unknown key "stor"`},
		{"defaults", "[defaults]\nplatform = \"linux/amd64\"\ntlsverify = true\n[[image]]\nref = \"a\"\n", `line 3: unknown key "defaults.tlsverify"`},
		{"image", "[[image]]\nref = \"a\"\n\n[[image]]\nref = \"b\"\nname = [\"x\"]\n", `line 6: unknown key "image.name"`},
		{"table", "[[image]]\nref = \"a\"\n[publsh]\nbefore = \"x\"\n", `line 3: unknown key "publsh"`},
		{"publish", "[[image]]\nref = \"a\"\n[publish]\nbefore = \"x\"\nonfailure = \"y\"\n", `line 5: unknown key "publish.onfailure"`},
		// builder.Options fields without a toml key are flags only.
		{"a flag-only setting", "[defaults]\nretrytimes = 5\n[[image]]\nref = \"a\"\n", `line 2: unknown key "defaults.retrytimes"`},
		{"another", "[[image]]\nref = \"a\"\nRegistriesConf = \"/r.conf\"\n", `line 3: unknown key "image.RegistriesConf"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.text)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestBadRecipes(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"syntax", "store = \n", "line 1"},
		{"wrong type", "[[image]]\nref = 3\n", "line 2"},
		{"no images", "store = \"/x\"\n", "no [[image]]"},
		{"no ref", "[[image]]\nnames = [\"a\"]\n", "has no ref"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.text)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "images.toml")
	if err := os.WriteFile(path, []byte("[[image]]\nreff = \"a\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("got %v", err)
	}
}

const withPublish = `store = "/cvmfs/sw.example.org/images"

[publish]
before = "cvmfs_server transaction {repo}"
after = "cvmfs_server publish {repo}"
on-failure = "cvmfs_server abort -f {repo}"
cvmfs-repo = "sw.example.org"
cvmfs-catalogs = true
hardlinks = "copy-across-dirs"

[[image]]
ref = "docker.io/library/alpine:3.20"
`

func TestParsePublish(t *testing.T) {
	r, err := Parse(withPublish)
	if err != nil {
		t.Fatal(err)
	}
	want := Publish{
		Before:        "cvmfs_server transaction {repo}",
		After:         "cvmfs_server publish {repo}",
		OnFailure:     "cvmfs_server abort -f {repo}",
		CVMFSRepo:     "sw.example.org",
		CVMFSCatalogs: true,
		Hardlinks:     HardlinksCopyAcrossDirs,
	}
	if r.Publish != want {
		t.Errorf("got %+v\nwant %+v", r.Publish, want)
	}
	if copyAcross, err := CopyHardlinksAcrossDirs(r.Publish.Hardlinks); err != nil || !copyAcross {
		t.Errorf("hardlinks: %v, %v", copyAcross, err)
	}
	// Without a [publish] table nothing runs and the store is written as before.
	r, err = Parse(good)
	if err != nil {
		t.Fatal(err)
	}
	if r.Publish != (Publish{}) {
		t.Errorf("no [publish] table, got %+v", r.Publish)
	}
}

func TestBadPublish(t *testing.T) {
	for _, tc := range []struct{ name, replace, with, want string }{
		{"unknown placeholder", "abort -f {repo}", "abort -f {rep}", `line 6: [publish] on-failure: unknown placeholder {rep}`},
		{"quoted placeholder", "publish {repo}", `publish \"{repo}\"`, `line 5: [publish] after: placeholder {repo} is inside quotes`},
		{"hardlinks mode", `"copy-across-dirs"`, `"copy"`, `line 9: [publish] hardlinks = "copy": want "keep" or "copy-across-dirs"`},
		{"catalogs type", "cvmfs-catalogs = true", `cvmfs-catalogs = "yes"`, "line 8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := strings.Replace(withPublish, tc.replace, tc.with, 1)
			if text == withPublish {
				t.Fatalf("test case replaces nothing")
			}
			_, err := Parse(text)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
}

// A relative store or auth file is relative to the recipe's directory, not to the current one (a
// cron run's is "/": "relstore" must not fill "/relstore").
func TestLoadResolvesPathsAgainstTheRecipesDirectory(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "images.toml")
	text := "store = \"relstore/{arch}\"\n[defaults]\nauthfile = \"auth/site.json\"\n" +
		"[[image]]\nref = \"a\"\nauthfile = \"../lab.json\"\n[[image]]\nref = \"b\"\nauthfile = \"/etc/abs.json\"\n"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir("/")
	r, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ what, got, want string }{
		{"store", r.Store, filepath.Join(dir, "relstore/{arch}")},
		{"[defaults] authfile", r.Defaults.AuthFile, filepath.Join(dir, "auth/site.json")},
		{"image authfile", r.Images[0].AuthFile, filepath.Join(filepath.Dir(dir), "lab.json")},
		{"absolute authfile", r.Images[1].AuthFile, "/etc/abs.json"},
		{"Dir", r.Dir, dir},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	if !r.RelativeStore {
		t.Error("RelativeStore is false for a relative store")
	}
}

// Each entry knows the line of its [[image]] header, for messages naming it.
func TestImageLines(t *testing.T) {
	r, err := Parse(good)
	if err != nil {
		t.Fatal(err)
	}
	if got := []string{r.Images[0].Where(), r.Images[1].Where()}; got[0] != "[[image]] at line 8" || got[1] != "[[image]] at line 12" {
		t.Errorf("entries at %v, want lines 8 and 12", got)
	}
	inline, err := Parse("image = [{ref = \"a\"}, {ref = \"b\"}]\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := inline.Images[1].Where(); got != "[[image]] number 2" {
		t.Errorf("an inline entry is %q", got)
	}
}
