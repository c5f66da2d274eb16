// Package testenv is the one way a test says what it needs from the machine: root, a tool, a
// kernel or filesystem feature. CI installs every tool (scripts/lib.sh's install_deps) and runs
// the tests as root, so there a missing requirement FAILS the test: a test that silently stops
// running proves nothing. Elsewhere (a developer's machine, not root) the test is skipped with a
// message that names what is missing and says that CI runs it.
//
// CI is recognised by the CI environment variable, which CI services set and .ci/run sets too.
// A skip that depends on something else than the machine (e.g. a variable the test's own child
// process sets) is a plain t.Skip with a comment saying why; everything else goes through here.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// InCI reports whether the tests run in CI, where nothing may be skipped for want of root or a tool.
func InCI() bool { return os.Getenv("CI") != "" }

// Missing ends the test because the machine lacks something it needs (what, formatted like
// fmt.Sprintf): a failure in CI, a loud skip elsewhere.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	what := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("%s, and CI is set: CI must provide it (scripts/lib.sh install_deps, tests run as root)", what)
		return // (Fatalf does not return; a stand-in T's may)
	}
	t.Skipf("NOT RUN: %s (CI runs this test; set CI=1 to make this skip a failure)", what)
}

// RequireRoot ends a test that needs root (file owners, device nodes, trusted.* xattrs, mounts,
// capabilities) when it does not run as root: see Missing.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "needs root (file owners, device nodes, trusted.* xattrs, mounts, capabilities)")
	}
}

// LookPath is the path of a tool the test runs; without it the test ends (see Missing), naming the
// Debian package that has it.
func LookPath(t testing.TB, tool, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		Missing(t, "needs %s (Debian package %s)", tool, debianPackage)
	}
	return p
}

// nobody is the user an unprivileged run takes: uid and gid 65534, as on Debian.
const nobody = "65534"

// Unprivileged lets the rest of a test run as an unprivileged user, to see what cargohold does
// where the kernel refuses a non-root user (root writes anyway). Not root, it returns true: the
// test goes on. As root (as in CI) it runs the test again in a child process as the user nobody
// (uid and gid 65534, no groups, no capabilities, through setpriv) and returns false: the caller
// returns, and the child's verdict is the test's. The child runs a world-readable copy of the
// test binary, in a world-readable copy of the package's testdata/ (its working directory, so
// testdata/... reads as usual), with a TMPDIR of its own: the checkout may sit where nobody cannot
// read (/root). Only a top-level test can be run again.
func Unprivileged(t *testing.T) bool {
	t.Helper()
	if os.Geteuid() != 0 {
		return true
	}
	setpriv := LookPath(t, "setpriv", "util-linux")
	if strings.Contains(t.Name(), "/") {
		t.Fatalf("testenv.Unprivileged: %s is a subtest; call it from a top-level test", t.Name())
	}
	dir := worldReadableDir(t)
	bin := filepath.Join(dir, "test.bin")
	copyFile(t, os.Args[0], bin, 0o755)
	work := filepath.Join(dir, "work")
	mkdir(t, work, 0o755)
	if _, err := os.Stat("testdata"); err == nil {
		if err := os.CopyFS(filepath.Join(work, "testdata"), os.DirFS("testdata")); err != nil {
			t.Fatal(err)
		}
		chmodReadable(t, filepath.Join(work, "testdata"))
	}
	tmp := filepath.Join(dir, "tmp")
	mkdir(t, tmp, 0o1777)

	cmd := exec.Command(setpriv, "--reuid="+nobody, "--regid="+nobody, "--clear-groups", "--",
		bin, "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.v", "-test.count=1")
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	out, err := cmd.CombinedOutput()
	t.Logf("%s run again as uid %s:\n%s", t.Name(), nobody, out)
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()+" ") {
		t.Fatalf("%s as uid %s: %v (output above); it must pass, not skip", t.Name(), nobody, err)
	}
	return false
}

// worldReadableDir is a new 0755 dir that goes when the test ends. Not t.TempDir: that is 0700.
func worldReadableDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cargohold-testenv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) }) // a temp dir: nothing to report
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for d := filepath.Dir(dir); d != "/"; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm()&0o001 == 0 {
			t.Fatalf("testenv.Unprivileged: uid %s cannot reach %s (%s is not searchable by others): set TMPDIR elsewhere", nobody, dir, d)
		}
	}
	return dir
}

func mkdir(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil { // not the umask's
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, mode); err != nil {
		t.Fatal(err)
	}
}

// chmodReadable opens a copied tree to every user: dirs a+rx, files a+r.
func chmodReadable(t *testing.T, root string) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if d.IsDir() {
			mode = 0o755
		}
		return os.Chmod(p, mode)
	})
	if err != nil {
		t.Fatal(err)
	}
}
