package publish

import (
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/cargohold/cargohold/builder"
	"github.com/cargohold/cargohold/layout"
	"github.com/cargohold/cargohold/recipe"
)

func mustRecipe(t *testing.T, text string) *recipe.Recipe {
	t.Helper()
	r, err := recipe.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// layoutOf is each store's requests as "ref@platform", for comparing plans.
func layoutOf(p *Plan) map[string][]string {
	out := map[string][]string{}
	for _, s := range p.Stores {
		for _, r := range s.Requests {
			out[s.Dir] = append(out[s.Dir], r.Ref+"@"+r.Options.Platform)
		}
	}
	return out
}

func TestStoresOfPlatforms(t *testing.T) {
	host := runtime.GOOS + "/" + runtime.GOARCH
	for _, tc := range []struct {
		name  string
		in    Input
		want  map[string][]string
		error string
	}{{
		name: "one store, host platform",
		in:   Input{Store: "/s", Refs: []string{"alpine"}},
		want: map[string][]string{"/s": {"alpine@"}},
	}, {
		name: "a template without platform takes the host's",
		in:   Input{Store: "/s/{arch}", Refs: []string{"alpine"}},
		want: map[string][]string{"/s/" + runtime.GOARCH: {"alpine@" + host}},
	}, {
		name: "recipe platforms into their stores",
		in: Input{Recipe: mustRecipe(t, `store = "/s/{platform}"
[defaults]
platforms = ["linux/amd64", "linux/arm64/v8"]
[[image]]
ref = "alpine"
[[image]]
ref = "busybox"
platform = "linux/arm64/v8"`)},
		want: map[string][]string{
			"/s/linux-amd64":    {"alpine@linux/amd64"},
			"/s/linux-arm64-v8": {"alpine@linux/arm64/v8", "busybox@linux/arm64/v8"},
		},
	}, {
		name: "--platform overrides the recipe's default platforms",
		in: Input{Settings: recipe.Settings{Options: builder.Options{Platform: "linux/s390x"}}, Recipe: mustRecipe(t, `store = "/s/{arch}"
[defaults]
platforms = ["linux/amd64", "linux/arm64"]
[[image]]
ref = "alpine"`)},
		want: map[string][]string{"/s/s390x": {"alpine@linux/s390x"}},
	}, {
		name: "two platforms may not share a store",
		in: Input{Recipe: mustRecipe(t, `store = "/s"
[[image]]
ref = "alpine"
platforms = ["linux/amd64", "linux/arm64"]`)},
		error: "would share store /s",
	}, {
		name:  "{variant} needs a variant",
		in:    Input{Store: "/s/{variant}", Refs: []string{"alpine"}, Settings: recipe.Settings{Options: builder.Options{Platform: "linux/arm64"}}},
		error: "names {variant}",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(tc.in)
			if tc.error != "" {
				if err == nil || !strings.Contains(err.Error(), tc.error) {
					t.Fatalf("err = %v, want one saying %q", err, tc.error)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := layoutOf(p); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("stores %v, want %v", got, tc.want)
			}
		})
	}
}

// Flags override the recipe's [defaults]; an [[image]]'s own settings win over both.
func TestFlagsOverRecipe(t *testing.T) {
	no, yes := false, true
	r := mustRecipe(t, `store = "/s"
[defaults]
tls-verify = true
authfile = "/recipe/auth.json"
[[image]]
ref = "alpine"
[[image]]
ref = "busybox"
tls-verify = true
authfile = "/image/auth.json"`)
	in := Input{Recipe: r, Settings: recipe.Settings{Options: builder.Options{TLSVerify: &no, AuthFile: "/flag/auth.json",
		RetryTimes: 5, Strict: true, PolicyPath: "/p.json"}}}
	targets := mustTargets(t, in)
	want := []builder.Options{
		{TLSVerify: &no, AuthFile: "/flag/auth.json", RetryTimes: 5, Strict: true, PolicyPath: "/p.json"},
		{TLSVerify: &yes, AuthFile: "/image/auth.json", RetryTimes: 5, Strict: true, PolicyPath: "/p.json"},
	}
	for i, tg := range targets {
		if !reflect.DeepEqual(*tg.req.Options, want[i]) {
			t.Errorf("%s: options %+v, want %+v", tg.req.Ref, *tg.req.Options, want[i])
		}
	}
}

func mustTargets(t *testing.T, in Input) []target {
	t.Helper()
	_, targets, _, err := gather(in)
	if err != nil {
		t.Fatal(err)
	}
	return targets
}

func TestInputRules(t *testing.T) {
	r := mustRecipe(t, "store = \"/s\"\n[[image]]\nref = \"alpine\"\n")
	bad := mustRecipe(t, "store = \"/s\"\n[[image]]\nref = \"alpine\"\n[[image]]\nref = \"Bad:Ref\"\n")
	badName := mustRecipe(t, "store = \"/s\"\n[[image]]\nref = \"alpine\"\nnames = [\"x/Y\"]\n")
	for _, tc := range []struct {
		name  string
		in    Input
		error string // "" for none
	}{
		{"no store", Input{Refs: []string{"alpine"}}, "no store"},
		{"nothing", Input{Store: "/s"}, "nothing to publish"},
		{"prune without recipe", Input{Store: "/s", Refs: []string{"alpine"}, Prune: true}, "--prune needs --recipe"},
		{"--name with one image", Input{Store: "/s", Refs: []string{"alpine"}, Names: []string{"site/a:1"}}, ""},
		{"--name with two images", Input{Store: "/s", Refs: []string{"a", "b"}, Names: []string{"x"}}, "exactly one IMAGE argument, got 2"},
		{"--name with a recipe only", Input{Recipe: r, Names: []string{"x"}}, "exactly one IMAGE argument, got 0"},
		{"--name not a name", Input{Store: "/s", Refs: []string{"alpine"}, Names: []string{"Site/A"}}, `name "Site/A"`},
		{"a bad reference in a recipe", Input{Recipe: bad}, `"Bad:Ref"`},
		{"a bad name in a recipe", Input{Recipe: badName}, `"x/Y"`},
		{"a missing auth file", Input{Store: "/s", Refs: []string{"alpine"}, Settings: recipe.Settings{Options: builder.Options{AuthFile: "/nonexistent/auth.json"}}}, "/nonexistent/auth.json"},
		{"a bad driver", Input{Store: "/s", Refs: []string{"alpine"}, Overrides: Overrides{Driver: ptr("btrfs")}}, "btrfs"},
		{"a bad hardlinks mode", Input{Store: "/s", Refs: []string{"alpine"}, Overrides: Overrides{Hardlinks: ptr("x")}}, "hardlinks"},
		{"a bad hook placeholder", Input{Store: "/s", Refs: []string{"alpine"}, Overrides: Overrides{Before: ptr("echo {nope}")}}, "{nope}"},
		{"cvmfs with hooks", Input{Store: "/cvmfs/a.org/s", Refs: []string{"alpine"}, Overrides: Overrides{CVMFS: ptr(true), Before: ptr("true")}},
			"runs cvmfs_server itself: leave out before, after and on-failure"},
		{"cvmfs without a repository", Input{Store: "/s", Refs: []string{"alpine"}, Overrides: Overrides{CVMFS: ptr(true)}},
			"not below /cvmfs/: name its repository with cvmfs-repo"},
		{"cvmfs, a repository not on this machine", Input{Store: "/cvmfs/not.here.example.org/s", Refs: []string{"alpine"}, Overrides: Overrides{CVMFS: ptr(true)}},
			"no such CVMFS repository on this machine: not.here.example.org"},
		{"a repository name that is none", Input{Store: "/s", Refs: []string{"alpine"}, Overrides: Overrides{CVMFSRepo: ptr("a b")}}, "is not a CVMFS repository name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.in)
			switch {
			case tc.error == "" && err != nil:
				t.Errorf("unexpected error %v", err)
			case tc.error != "" && (err == nil || !strings.Contains(err.Error(), tc.error)):
				t.Errorf("err = %v, want one saying %q", err, tc.error)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestStoreSetup(t *testing.T) {
	r := mustRecipe(t, `store = "/cvmfs/sw.example.org/images"
[publish]
before = "cvmfs_server transaction {repo}"
hardlinks = "copy-across-dirs"
driver = "vfs"
[[image]]
ref = "alpine"`)
	p, err := New(Input{Recipe: r, Overrides: Overrides{After: ptr("cvmfs_server publish {repo}"), CVMFSCatalogs: ptr(true)}})
	if err != nil {
		t.Fatal(err)
	}
	s := p.Stores[0]
	if s.Hooks.Values.Repo != "sw.example.org" || s.Hooks.Before == "" || s.Hooks.After != "cvmfs_server publish {repo}" {
		t.Errorf("hooks %+v", s.Hooks)
	}
	want := layout.Options{CatalogMarkers: true, Driver: layout.VFS, Create: true, Dedup: layout.DedupAuto}
	if !reflect.DeepEqual(s.Options, want) || !s.CopyHardlinksAcrossDirs {
		t.Errorf("options %+v (copy links %v), want %+v and copies", s.Options, s.CopyHardlinksAcrossDirs, want)
	}
}

func TestDedupSetting(t *testing.T) {
	for _, tc := range []struct {
		name, recipe string
		flag         *string
		want         layout.Dedup
		error        string
	}{
		{name: "default", want: layout.DedupAuto},
		{name: "recipe", recipe: `dedup = "hardlink"`, want: layout.DedupHardlink},
		{name: "flag over recipe", recipe: `dedup = "hardlink"`, flag: ptr("off"), want: layout.DedupOff},
		{name: "bad value", flag: ptr("reflink"), error: `dedup "reflink": want auto, off or hardlink`},
		{name: "hard links and CVMFS copies", recipe: `hardlinks = "copy-across-dirs"`, flag: ptr("hardlink"),
			error: `dedup = "hardlink" links files across layers, but hardlinks = "copy-across-dirs"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRecipe(t, "store = \"/srv/images\"\n[publish]\n"+tc.recipe+"\n[[image]]\nref = \"alpine\"")
			p, err := New(Input{Recipe: r, Overrides: Overrides{Dedup: tc.flag}})
			switch {
			case tc.error != "":
				if err == nil || !strings.Contains(err.Error(), tc.error) {
					t.Errorf("err = %v, want one saying %q", err, tc.error)
				}
			case err != nil:
				t.Fatal(err)
			case p.Stores[0].Options.Dedup != tc.want:
				t.Errorf("dedup %q, want %q", p.Stores[0].Options.Dedup, tc.want)
			}
		})
	}
}

func TestExtrasPolicy(t *testing.T) {
	some := []string{"docker.io/library/old:1"}
	for _, tc := range []struct {
		name   string
		extras []string
		prune  bool
		failed int
		want   ExtrasAction
	}{
		{"no extras", nil, true, 0, NoExtras},
		{"extras without --prune", some, false, 0, ReportExtras},
		{"extras without --prune, failures", some, false, 2, ReportExtras},
		{"--prune", some, true, 0, RemoveExtras},
		{"--prune after a failure", some, true, 1, KeepForFailure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Extras(tc.extras, tc.prune, tc.failed); got != tc.want {
				t.Errorf("Extras(%v, prune %v, failed %d) = %v, want %v", tc.extras, tc.prune, tc.failed, got, tc.want)
			}
		})
	}
}

func TestRelativeStoreIsMadeAbsolute(t *testing.T) {
	wd, _ := os.Getwd()
	p, err := New(Input{Store: "rel/store", Refs: []string{"alpine"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(wd, "rel/store"); p.Stores[0].Dir != want || p.Stores[0].Hooks.Values.Store != want {
		t.Errorf("store %s, hooks' {store} %s; want %s", p.Stores[0].Dir, p.Stores[0].Hooks.Values.Store, want)
	}
}

// Two entries that claim one name in one store are refused before anything runs, naming both
// entries by their lines: the name would move between two images on every run.
func TestTwoEntriesClaimingOneNameAreRefused(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"same extra name", `store = "/s"
[[image]]
ref = "registry.example/a:1"
names = ["site/bb:stable"]

[[image]]
ref = "registry.example/b:1"
names = ["docker.io/site/bb:stable"]`,
			`[[image]] at line 2 (ref "registry.example/a:1") and [[image]] at line 6 (ref "registry.example/b:1") both claim the name docker.io/site/bb:stable in store /s`},
		{"a ref is another's name", `store = "/s"
[[image]]
ref = "docker://registry.example/a:1"
[[image]]
ref = "registry.example/b:1"
names = ["registry.example/a:1"]`,
			`[[image]] at line 2 (ref "docker://registry.example/a:1") and [[image]] at line 4 (ref "registry.example/b:1") both claim the name registry.example/a:1`},
		{"the same ref twice", `store = "/s"
[[image]]
ref = "registry.example/a"
[[image]]
ref = "registry.example/a:latest"`,
			`both claim the name registry.example/a:latest`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Input{Recipe: mustRecipe(t, tc.text)})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
	// One name per platform store is fine: each store holds its own image under it.
	_, err := New(Input{Recipe: mustRecipe(t, `store = "/s/{arch}"
[[image]]
ref = "registry.example/a:1"
platforms = ["linux/amd64", "linux/arm64"]
names = ["site/a:stable"]`)})
	if err != nil {
		t.Errorf("one name in two platform stores: %v", err)
	}
}

// A recipe's relative store is its directory's, shown on every output line, and its hooks run
// there; a cron run's current directory ("/") plays no part.
func TestRecipePathsAreTheRecipesDirectorys(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "images.toml")
	if err := os.WriteFile(path, []byte("store = \"relstore\"\n[publish]\nafter = \"./notify\"\n[[image]]\nref = \"registry.example/a:1\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir("/")
	r, err := recipe.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Input{Recipe: r})
	if err != nil {
		t.Fatal(err)
	}
	s := p.Stores[0]
	if want := filepath.Join(dir, "relstore"); s.Dir != want || s.Hooks.Values.Store != want {
		t.Errorf("store %s ({store} %s), want %s", s.Dir, s.Hooks.Values.Store, want)
	}
	if s.Hooks.Dir != dir {
		t.Errorf("hooks run in %q, want the recipe's directory %s", s.Hooks.Dir, dir)
	}
	if !p.NamesStores() {
		t.Error("the output does not name a store the recipe gave as a relative path")
	}
}

// A name the recipe lists is not an extra, even when its image failed in this run (its published
// version stays and is still wanted).
func TestListedNamesAreNotExtras(t *testing.T) {
	p, err := New(Input{Recipe: mustRecipe(t, `store = "/s"
[[image]]
ref = "registry.example/team/app:1"
[[image]]
ref = "oci:`+t.TempDir()+`:1"
names = ["site/tool:1"]`)})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"docker.io/site/tool:1", "registry.example/team/app:1"}
	if got := p.Stores[0].Listed(); !reflect.DeepEqual(got, want) {
		t.Errorf("listed %v, want %v", got, want)
	}
}

// REGISTRY_AUTH_FILE is the least specific statement: a recipe's authfile ([defaults] or the
// image's) and --authfile win over it; it serves only where nothing else names a file.
func TestEnvironmentAuthFileIsTheLowest(t *testing.T) {
	r := mustRecipe(t, `store = "/s"
[defaults]
authfile = "/recipe/auth.json"
[[image]]
ref = "alpine"
[[image]]
ref = "busybox"
authfile = "/image/auth.json"`)
	bare := mustRecipe(t, "store = \"/s\"\n[[image]]\nref = \"alpine\"\n")
	for _, tc := range []struct {
		name string
		in   Input
		want []string
	}{
		{"recipe over environment", Input{Recipe: r, EnvAuthFile: "/env/auth.json"}, []string{"/recipe/auth.json", "/image/auth.json"}},
		{"flag over both", Input{Recipe: r, EnvAuthFile: "/env/auth.json", Settings: recipe.Settings{Options: builder.Options{AuthFile: "/flag/auth.json"}}},
			[]string{"/flag/auth.json", "/image/auth.json"}},
		{"environment where nothing else names one", Input{Recipe: bare, EnvAuthFile: "/env/auth.json", Refs: []string{"busybox"}},
			[]string{"/env/auth.json", "/env/auth.json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, tg := range mustTargets(t, tc.in) {
				got = append(got, tg.req.Options.AuthFile)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("auth files %v, want %v", got, tc.want)
			}
		})
	}
}

// A store reached through a symlinked parent is published, locked and reported at its real path.
func TestStoreThroughSymlinkIsItsRealPath(t *testing.T) {
	base := t.TempDir()
	if err := os.Mkdir(filepath.Join(base, "real"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(base, "real"), filepath.Join(base, "link")); err != nil {
		t.Fatal(err)
	}
	want, err := filepath.EvalSymlinks(filepath.Join(base, "real"))
	if err != nil {
		t.Fatal(err)
	}
	want = filepath.Join(want, "store")
	p, err := New(Input{Store: filepath.Join(base, "link", "store"), Refs: []string{"alpine"}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Stores[0].Dir != want || p.Stores[0].Hooks.Values.Store != want {
		t.Errorf("store %s, hooks' {store} %s; want %s", p.Stores[0].Dir, p.Stores[0].Hooks.Values.Store, want)
	}
}
