package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cargohold/cargohold/internal/testenv"
	"github.com/cargohold/cargohold/internal/testimage"
	"github.com/cargohold/cargohold/layout"
	"github.com/cargohold/cargohold/publish"
	"github.com/sirupsen/logrus"
)

// These tests run the app in-process, as an admin would run the binary, on OCI layouts written by
// internal/testimage (no registry, no Podman: the e2e suites cover those).

var layouts string // dir of the OCI layouts hello, other, multi

func TestMain(m *testing.M) {
	testimage.MainWithFixtureLayouts(m, &layouts, "hello", "other", "multi")
}

// ociRef is the oci: reference of a fixture ("hello:1").
func ociRef(nameTag string) string {
	name, tag, _ := strings.Cut(nameTag, ":")
	return "oci:" + filepath.Join(layouts, name) + ":" + tag
}

type result struct {
	stdout, stderr string
	code           int
}

// cargohold runs the command line in-process.
func cargohold(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), append([]string{"cargohold"}, args...), &out, &errOut)
	return result{out.String(), errOut.String(), code}
}

func (r result) want(t *testing.T, code int, stderrHas ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
	for _, s := range stderrHas {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr does not say %q:\n%s", s, r.stderr)
		}
	}
}

// publishArgs publishes hello:1 as localhost/test/hello:1 into store.
func publishArgs(store string, extra ...string) []string {
	return append([]string{"publish", "--store", store, "--insecure-policy", "--name", "localhost/test/hello:1",
		ociRef("hello:1")}, extra...)
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name      string
		args      []string
		code      int
		stderrHas string
	}{
		{"help", []string{"help"}, 0, ""},
		{"help of a command", []string{"help", "publish"}, 0, ""},
		{"version", []string{"--version"}, 0, ""},
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"unknown flag", []string{"ls", "--stroe", dir}, 2, "stroe"},
		{"a bad flag value", []string{"publish", "--store", dir, "--jobs", "many", "alpine"}, 2, `invalid value "many" for flag -jobs`},
		{"a flag without its value", []string{"ls", "--store"}, 2, "flag needs an argument"},
		{"an unknown help topic", []string{"help", "frobnicate"}, 2, "No help topic"},
		{"an unknown conf subcommand", []string{"conf", "frob"}, 2, "frob"},
		{"missing --store", []string{"gc"}, 2, "store"},
		{"bad --format", []string{"ls", "--store", dir, "--format", "yaml"}, 2, "yaml"},
		{"missing --authfile", []string{"publish", "--store", dir, "alpine", "--authfile", dir + "/none.json"}, 2, "none.json"},
		{"--name with two images", []string{"publish", "--store", dir, "--name", "x/y:1", "a", "b"}, 2, "exactly one IMAGE"},
		{"a malformed reference", []string{"publish", "--store", dir, "Not/A:Ref:"}, 2, "Not/A:Ref:"},
		{"a bad platform", []string{"publish", "--store", dir, "--platform", "linux", "alpine"}, 2, `platform "linux"`},
		{"--prune without a recipe", []string{"publish", "--store", dir, "--prune", "alpine"}, 2, "--prune needs --recipe"},
		{"a bad recipe", []string{"publish", "--recipe", filepath.Join(dir, "missing.toml")}, 2, "missing.toml"},
		{"rm without an image", []string{"rm", "--store", dir}, 2, "at least one IMAGE"},
		{"a bad --dedup", []string{"publish", "--store", dir, "--dedup", "reflink", "alpine"}, 2, `dedup "reflink": want auto, off or hardlink`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cargohold(t, tc.args...).want(t, tc.code, tc.stderrHas)
		})
	}
}

// An error of no kind is a failure (1), not a usage error: 2 is only for what the user typed, and the
// flag parser's errors are marked as such (TestExitCodes).
func TestErrorsOfNoKindExit1(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{errors.New("writing the report: broken pipe"), exitFailed},
		{fmt.Errorf("wrapped: %w", errors.New("no kind")), exitFailed},
		{usageErrorf("bad flag"), exitUsage},
		{storeError(errors.New("unreadable")), exitStore},
		{fmt.Errorf("opening store: %w", layout.ErrNotStore), exitUsage},
		{fmt.Errorf("%w: 1 of 2 images failed", publish.ErrImagesFailed), exitFailed},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			if got := exitCode(tc.err); got != tc.want {
				t.Errorf("exitCode(%q) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}

func TestVersionNamesTheLibraries(t *testing.T) {
	r := cargohold(t, "--version")
	r.want(t, 0)
	for _, lib := range []string{"go.podman.io/image/v5", "go.podman.io/storage"} {
		if !strings.Contains(r.stdout, lib) {
			t.Errorf("--version does not name %s:\n%s", lib, r.stdout)
		}
	}
}

// Flags may follow the image arguments, as in podman and skopeo.
func TestFlagsAfterArguments(t *testing.T) {
	testenv.RequireRoot(t)
	store := filepath.Join(t.TempDir(), "store")
	cargohold(t, "publish", ociRef("hello:1"), "--store", store, "--insecure-policy", "--name", "localhost/test/hello:1").want(t, 0)
	r := cargohold(t, "ls", "--store", store, "--format", "json")
	r.want(t, 0)
	if !strings.Contains(r.stdout, "localhost/test/hello:1") {
		t.Errorf("ls after publish REF --store S:\n%s", r.stdout)
	}
}

func TestReorderArgs(t *testing.T) {
	app := newApp(nil, nil)
	for _, tc := range []struct{ in, want string }{
		{"publish REF --store S", "publish --store S -- REF"},
		{"publish --store=S REF -q", "publish --store=S -q -- REF"},
		{"publish REF --tls-verify=false --name N", "publish --tls-verify=false --name N -- REF"},
		{"publish A -- --B", "publish -- A --B"},
		{"conf patch --store S --file F", "conf patch --store S --file F"},
		{"rm --store S img1 img2 --dry-run", "rm --store S --dry-run -- img1 img2"},
		{"help publish", "help publish"},
		{"frobnicate --x y", "frobnicate --x y"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			args, err := reorderArgs(app, append([]string{"cargohold"}, strings.Fields(tc.in)...))
			if err != nil {
				t.Fatalf("%q: %v", tc.in, err)
			}
			if got := strings.Join(args[1:], " "); got != tc.want {
				t.Errorf("%q → %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// The --json report's schema, as the README documents it.
func TestPublishJSONSchema(t *testing.T) {
	testenv.RequireRoot(t)
	store := filepath.Join(t.TempDir(), "store")
	r := cargohold(t, publishArgs(store, "--json")...)
	r.want(t, 0)
	var report map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &report); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, r.stdout)
	}
	for _, key := range []string{"store", "driver", "dedup", "images", "failed"} {
		if _, ok := report[key]; !ok {
			t.Errorf("report lacks %q: %v", key, report)
		}
	}
	images, _ := report["images"].([]any)
	if len(images) != 1 {
		t.Fatalf("images: %v", report["images"])
	}
	img := images[0].(map[string]any)
	for _, key := range []string{"reference", "names", "id", "digest", "action", "layers_fetched", "bytes_fetched",
		"files_shared", "bytes_shared", "seconds"} {
		if _, ok := img[key]; !ok {
			t.Errorf("image report lacks %q: %v", key, img)
		}
	}
	if img["action"] != "added" || report["driver"] != "overlay" || report["failed"] != 0.0 {
		t.Errorf("report %v", report)
	}
}

func writeRecipe(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "recipe.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func recipeOf(store string, refs ...string) string {
	text := "store = \"" + store + "\"\n"
	for _, nameTag := range refs {
		name, _, _ := strings.Cut(nameTag, ":")
		text += "[[image]]\nref = \"" + ociRef(nameTag) + "\"\nnames = [\"localhost/test/" + name + ":1\"]\n"
	}
	return text
}

// Names the recipe no longer lists are reported; --prune removes them (their image is superseded,
// as by rm), but not after a run in which an image failed.
func TestPrunePolicy(t *testing.T) {
	testenv.RequireRoot(t)
	store := filepath.Join(t.TempDir(), "store")
	both := writeRecipe(t, recipeOf(store, "hello:1", "other:1"))
	cargohold(t, "publish", "--insecure-policy", "--recipe", both).want(t, 0)

	one := writeRecipe(t, recipeOf(store, "hello:1"))
	r := cargohold(t, "publish", "--insecure-policy", "--recipe", one)
	r.want(t, 0)
	if !strings.Contains(r.stdout, "extra     localhost/test/other:1") {
		t.Errorf("without --prune the extra name is not reported:\n%s", r.stdout)
	}

	failing := writeRecipe(t, recipeOf(store, "hello:1")+"[[image]]\nref = \"oci:"+filepath.Join(layouts, "none")+":1\"\nnames = [\"localhost/test/none:1\"]\n")
	r = cargohold(t, "publish", "--insecure-policy", "--recipe", failing, "--prune")
	r.want(t, 1, "not pruning localhost/test/other:1: 1 image of the recipe failed")

	r = cargohold(t, "publish", "--insecure-policy", "--recipe", one, "--prune")
	r.want(t, 0)
	if !strings.Contains(r.stdout, "pruned    localhost/test/other:1") || !strings.Contains(r.stdout, "(kept as localhost/test/other@sha256:") {
		t.Errorf("--prune did not prune, or not say that the image is kept until gc:\n%s", r.stdout)
	}
	ls := cargohold(t, "ls", "--store", store)
	if strings.Contains(ls.stdout, "other:1") || !regexp.MustCompile(`localhost/test/other@sha256:.*superseded`).MatchString(ls.stdout) {
		t.Errorf("the pruned name is still listed, or its image not as superseded:\n%s", ls.stdout)
	}
	r = cargohold(t, "publish", "--insecure-policy", "--recipe", one, "--prune")
	if r.want(t, 0); strings.Contains(r.stdout, "extra") || strings.Contains(r.stdout, "pruned") {
		t.Errorf("a superseded image's digested name counts as a name the recipe does not list:\n%s", r.stdout)
	}
}

// A recipe's platforms go into the stores its template names; a single-platform image fails for
// the other platform's store (exit 1) and never lands there; each line names its store.
func TestPlatformTemplates(t *testing.T) {
	testenv.RequireRoot(t)
	base := t.TempDir()
	path := writeRecipe(t, `store = "`+base+`/{arch}"
[defaults]
platforms = ["linux/amd64", "linux/arm64"]
[[image]]
ref = "`+ociRef("multi:1")+`"
names = ["localhost/test/multi:1"]
[[image]]
ref = "`+ociRef("hello:1")+`"
names = ["localhost/test/hello:1"]
`)
	r := cargohold(t, "publish", "--insecure-policy", "--recipe", path)
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	r.want(t, 1, "the image is linux/"+runtime.GOARCH+", not the wanted linux/"+other, "["+filepath.Join(base, other)+"]")
	for _, arch := range []string{"amd64", "arm64"} {
		if !strings.Contains(r.stdout, "localhost/test/multi:1") || !strings.Contains(r.stdout, "["+filepath.Join(base, arch)+"]") {
			t.Errorf("no line names the %s store:\n%s", arch, r.stdout)
		}
	}
	ls := cargohold(t, "ls", "--store", filepath.Join(base, other))
	if strings.Contains(ls.stdout, "hello") {
		t.Errorf("the %s image landed in the %s store:\n%s", runtime.GOARCH, other, ls.stdout)
	}
	ls = cargohold(t, "ls", "--store", filepath.Join(base, runtime.GOARCH))
	if !strings.Contains(ls.stdout, "localhost/test/hello:1") {
		t.Errorf("the %s store lacks its image:\n%s", runtime.GOARCH, ls.stdout)
	}
}

// A failed before hook exits 4 and publishes nothing; a failed after hook makes a good run exit 4.
func TestHookExitCodes(t *testing.T) {
	testenv.RequireRoot(t)
	store := filepath.Join(t.TempDir(), "store")
	cargohold(t, publishArgs(store, "--before", "exit 7")...).want(t, 4, "before hook failed")
	if _, err := os.Stat(store); err == nil {
		t.Error("the store was created although before failed")
	}
	cargohold(t, publishArgs(store, "--after", "exit 7")...).want(t, 4, "after hook failed")
}

// SIGTERM while a run is under way: on-failure runs, the message says what was not published, the
// exit status is 143 and the store holds nothing of the interrupted image.
func TestSignalStopsThePublish(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	store, marker := filepath.Join(dir, "store"), filepath.Join(dir, "on-failure-ran")
	// The before hook's shell is our child: it signals this process as systemd stopping the unit would.
	r := cargohold(t, publishArgs(store, "--before", "kill -TERM $PPID; sleep 0.5", "--on-failure", "touch "+marker)...)
	r.want(t, 143, "interrupted by SIGTERM: not published: "+ociRef("hello:1"))
	if _, err := os.Stat(marker); err != nil {
		t.Error("on-failure did not run")
	}
	if ls := cargohold(t, "ls", "--store", store); strings.Contains(ls.stdout, "hello") {
		t.Errorf("the interrupted image is in the store:\n%s", ls.stdout)
	}
}

// gc and rm --quiet print nothing on success.
func TestQuiet(t *testing.T) {
	testenv.RequireRoot(t)
	store := filepath.Join(t.TempDir(), "store")
	cargohold(t, publishArgs(store)...).want(t, 0)
	for _, args := range [][]string{
		{"rm", "--store", store, "--quiet", "localhost/test/hello:1"},
		{"gc", "--store", store, "--quiet", "--grace", "0s"},
	} {
		r := cargohold(t, args...)
		r.want(t, 0)
		if r.stdout+r.stderr != "" {
			t.Errorf("%v printed %q %q", args, r.stdout, r.stderr)
		}
	}
}

// heldStore publishes a store and holds its writer lock, as a run under way does, until the test ends.
func heldStore(t *testing.T) string {
	t.Helper()
	store := filepath.Join(t.TempDir(), "store")
	cargohold(t, publishArgs(store)...).want(t, 0)
	held, err := layout.OpenWithOptions(t.Context(), store, layout.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := held.Close(); err != nil {
			t.Error(err)
		}
	})
	return store
}

// A store another run holds: --no-wait exits 3 at once, naming the reason.
func TestLockedStoreExits3(t *testing.T) {
	testenv.RequireRoot(t)
	store := heldStore(t)
	cargohold(t, "gc", "--store", store, "--no-wait").want(t, 3, "another cargohold run is writing the store")
	cargohold(t, publishArgs(store, "--no-wait")...).want(t, 3, "another cargohold run is writing the store")
}

// SIGTERM while gc waits for another run's lock ends the wait: exit 143, saying why.
func TestSignalEndsALockWait(t *testing.T) {
	testenv.RequireRoot(t)
	store := heldStore(t)
	go func() {
		time.Sleep(500 * time.Millisecond)
		_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
	}()
	start := time.Now()
	cargohold(t, "gc", "--store", store).want(t, 143, "waiting: another cargohold run", "interrupted by SIGTERM")
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("gc took %s to stop", d)
	}
}

// containers/image's own log lines come out as cargohold's, not as logrus's "time=… level=…".
func TestLibraryLogLines(t *testing.T) {
	var buf bytes.Buffer
	routeLibraryLogs(&buf)
	defer routeLibraryLogs(os.Stderr)
	logrus.Infof("Reading blob body from %s failed (%v), reconnecting after %d bytes…", "https://r/v2/x/blobs/sha256:1", "EOF", 10)
	logrus.Debugf("not shown")
	if got, want := buf.String(), "note: Reading blob body from https://r/v2/x/blobs/sha256:1 failed (EOF), reconnecting after 10 bytes…\n"; got != want {
		t.Errorf("logged %q, want %q", got, want)
	}
}

// SIGTERM while the registry hangs (systemd's stop timeout, a cancelled CI job): the fetch stops,
// on-failure runs, and the run exits 143 saying what was not published.
func TestSignalDuringAHungFetch(t *testing.T) {
	testenv.RequireRoot(t)
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return // 200: no authentication
		}
		<-r.Context().Done() // the manifest never comes
	}))
	defer hung.Close()
	dir := t.TempDir()
	store, marker := filepath.Join(dir, "store"), filepath.Join(dir, "on-failure-ran")
	ref := "docker://" + strings.TrimPrefix(hung.URL, "http://") + "/team/app:1"
	go func() {
		time.Sleep(500 * time.Millisecond)
		_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
	}()
	start := time.Now()
	r := cargohold(t, "publish", "--store", store, "--insecure-policy", "--tls-verify=false", ref, "--on-failure", "touch "+marker)
	r.want(t, 143, "interrupted by SIGTERM: not published: "+ref)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the run took %s to stop", d)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Error("on-failure did not run")
	}
}

// An authentication failure names the registry and the credential file consulted.
func TestAuthFailureNamesRegistryAndFile(t *testing.T) {
	locked := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`))
	}))
	defer locked.Close()
	dir := t.TempDir()
	auth := filepath.Join(dir, "auth.json")
	if err := os.WriteFile(auth, []byte(`{"auths":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	registry := strings.TrimPrefix(locked.URL, "http://")
	r := cargohold(t, "publish", "--store", filepath.Join(dir, "store"), "--insecure-policy", "--tls-verify=false",
		"--authfile", auth, "--retry-times", "0", "docker://"+registry+"/team/app:1")
	r.want(t, 1, "authentication to "+registry+" failed", auth)
}

// --version names what was built: the stamped version, the toolchain's module version or
// commit; never Go's "(devel)".
func TestOwnVersion(t *testing.T) {
	devel := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}
	withVCS := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "16f5eb8a1b2c3d4e5f60718293a4b5c6d7e8f901"}, {Key: "vcs.modified", Value: "true"}}}
	tagged := &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}
	for _, tc := range []struct {
		stamped string
		info    *debug.BuildInfo
		want    string
	}{
		{"v1.5.0-3-g16f5eb8", devel, "v1.5.0-3-g16f5eb8"},
		{"", tagged, "v1.4.0"},
		{"", withVCS, "16f5eb8a1b2c-dirty"},
		{"", devel, unknownVersion},
		{"", nil, unknownVersion},
	} {
		if got := ownVersion(tc.stamped, tc.info); got != tc.want {
			t.Errorf("ownVersion(%q, %+v) = %q, want %q", tc.stamped, tc.info, got, tc.want)
		}
	}
}
