package cvmfs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cargohold/cargohold/builder"
	"github.com/cargohold/cargohold/internal/testenv"
	"github.com/cargohold/cargohold/internal/testimage"
	"github.com/cargohold/cargohold/layout"
	"go.podman.io/storage/pkg/system"
	"golang.org/x/sys/unix"
)

// These tests run a Publication against a stand-in cvmfs_server that records its calls and keeps a
// "repository" in a plain directory: ingest unpacks the tar there without xattrs (as CVMFS drops
// them), transaction, publish and abort only record. What CVMFS itself does (overlay mounts,
// revisions, split hard links) is scripts/e2e-cvmfs's (scripts/standin/cvmfs_server) and the real
// suite's (scripts/e2e-cvmfs-real).

const fakeServer = `#!/bin/sh
# the calls, one a line; a file fail-COMMAND next to the log makes COMMAND fail
echo "$*" >>"$LOG"
[ ! -e "$(dirname "$LOG")/fail-$1" ] || exit 1
# CVMFS's flag of an open transaction, in the spool dir
case $1 in
transaction) touch "$SPOOL/in_transaction.lock" ;;
publish | abort) rm -f "$SPOOL/in_transaction.lock" ;;
esac
[ "$1" = ingest ] || exit 0
shift
base=
while [ $# -gt 1 ]; do
	case $1 in
	--delete) rm -rf "${REPO:?}/$2"; shift ;;
	--base_dir) base=$2; shift ;;
	esac
	shift
done
[ -n "$base" ] || exit 0
mkdir -p "$REPO/$base"
exec tar -x -C "$REPO/$base" --numeric-owner --same-permissions --no-xattrs --read-full-records -f -
`

type testRepo struct {
	dir, log, spool string
	server          Server
}

func newTestRepo(t *testing.T) *testRepo {
	t.Helper()
	r := &testRepo{dir: t.TempDir(), log: filepath.Join(t.TempDir(), "calls"), spool: t.TempDir()}
	script := filepath.Join(filepath.Dir(r.log), "cvmfs_server")
	if err := os.WriteFile(script, []byte(fakeServer), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LOG", r.log)
	t.Setenv("REPO", r.dir)
	t.Setenv("SPOOL", r.spool)
	r.server = Server{Command: script}
	return r
}

// calls returns the calls made since the last one and forgets them.
func (r *testRepo) calls(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(r.log)
	if errors.Is(err, os.ErrNotExist) {
		return ""
	} else if err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(r.log)
	return strings.ReplaceAll(strings.TrimSpace(string(data)), "\n", "|")
}

func (r *testRepo) publication(t *testing.T, includeXattrs bool) *Publication {
	t.Helper()
	repo := &Repo{Name: "test.repo", Mountpoint: r.dir, ClientView: r.dir, IncludeXattrs: includeXattrs, ConfigFile: "server.conf", Spool: r.spool}
	p, err := newPublication(repo, filepath.Join(r.dir, "sw", "images"), "")
	if err != nil {
		t.Fatal(err)
	}
	p.Server, p.StagingRoot = r.server, t.TempDir()
	return p
}

// appImage is the app fixture without its big sparse file: a whiteout, an opaque dir, hard links,
// a setuid file, a file capability and a file of another owner.
func appImage(t *testing.T) string {
	t.Helper()
	layer3 := testimage.AppLayer3(testimage.Gzip)
	layer3.Entries = layer3.Entries[:len(layer3.Entries)-1]
	img := testimage.Image{Cmd: []string{"/bin/sh"}, Layers: []testimage.Layer{
		testimage.BaseLayer([]byte("not busybox\n"), testimage.Gzip), testimage.AppLayer2(testimage.Gzip), layer3}}
	dir := filepath.Join(t.TempDir(), "app")
	if _, err := testimage.WriteLayout(dir, "1", img); err != nil {
		t.Fatal(err)
	}
	return "oci:" + dir + ":1"
}

// publish runs p as the CLI does with one image, the publish failing if fail is set.
func publish(t *testing.T, p *Publication, ref string, fail bool) error {
	t.Helper()
	dir, err := p.Begin()
	if err != nil {
		return err
	}
	store, err := layout.OpenWithOptions(context.Background(), dir, layout.Options{Create: true, CatalogMarkers: true, ServedAt: p.Store})
	if err != nil {
		t.Fatal(err)
	}
	pub := builder.Publisher{Store: store, Options: builder.Options{InsecurePolicy: true}}
	res := pub.Publish(context.Background(), builder.Request{Ref: ref, Names: []string{"example.com/app:1"}})
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	return p.Finish(context.Background(), fail)
}

func TestPublication(t *testing.T) {
	testenv.RequireRoot(t)
	r := newTestRepo(t)
	ref := appImage(t)
	store := filepath.Join(r.dir, "sw", "images")

	// A failed run touches nothing.
	if err := publish(t, r.publication(t, true), ref, true); err != nil {
		t.Fatal(err)
	}
	if calls := r.calls(t); calls != "" {
		t.Errorf("a failed run called cvmfs_server: %s", calls)
	}

	// A repository that drops xattrs refuses an image that has some.
	err := publish(t, r.publication(t, false), ref, false)
	if !errors.Is(err, ErrXattrsDropped) || !strings.Contains(err.Error(), "example.com/app:1") ||
		!strings.Contains(err.Error(), "usr/bin/captool has the extended attribute security.capability") {
		t.Errorf("publishing xattrs into a repository that drops them: %v", err)
	}
	if calls := r.calls(t); calls != "" {
		t.Errorf("the refused run called cvmfs_server: %s", calls)
	}

	// A transaction that fails after the ingest leaves layer dirs that no record names; the next
	// run replaces them.
	if err := os.WriteFile(filepath.Join(filepath.Dir(r.log), "fail-transaction"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := publish(t, r.publication(t, true), ref, false); err == nil {
		t.Error("a failing transaction: no error")
	}
	if calls := r.calls(t); calls != "ingest --tar_file - --base_dir sw --keep-ownership test.repo|transaction test.repo" {
		t.Errorf("calls %s", calls)
	}
	if err := os.Remove(filepath.Join(filepath.Dir(r.log), "fail-transaction")); err != nil {
		t.Fatal(err)
	}
	if err := publish(t, r.publication(t, true), ref, false); err != nil {
		t.Fatal(err)
	}
	calls := r.calls(t)
	if !strings.HasPrefix(calls, "ingest --delete sw/images/overlay/") || strings.Count(calls, "--delete") != 3 ||
		!strings.HasSuffix(calls, "test.repo|ingest --tar_file - --base_dir sw --keep-ownership test.repo|transaction test.repo|publish test.repo") {
		t.Errorf("calls %s: want the removal of the three layer dirs, an ingest of them, a transaction and a publish", calls)
	}
	snap, err := layout.Read(store)
	if err != nil || len(snap.Images) != 1 {
		t.Fatalf("the published store: %v, %v", snap, err)
	}
	info, err := snap.Info(snap.Images[0])
	if err != nil {
		t.Fatal(err)
	}
	top := info.Layers[2].Dir
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(top, "data/deleted.txt"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("the whiteout of data/deleted.txt: %+v, %v", st, err)
	}
	if err := unix.Lstat(filepath.Join(top, "data/opq/old1"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR {
		t.Errorf("the opaque dir's whiteout of old1: %v", err)
	}
	if x, err := system.Lgetxattr(filepath.Join(top, "data/opq"), "trusted.overlay.opaque"); err != nil || x != nil {
		t.Errorf("the opaque marker made redundant by whiteouts is not brought in: %q, %v", x, err)
	}
	middle := info.Layers[1].Dir
	if x, err := system.Lgetxattr(filepath.Join(middle, "usr/bin/captool"), "security.capability"); err != nil || string(x) != string(testimage.CapNetBindService) {
		t.Errorf("the capability, set in the transaction: %x, %v", x, err)
	}
	if err := unix.Lstat(filepath.Join(middle, "usr/bin/suidtool"), &st); err != nil || st.Mode&0o7777 != 0o4755 {
		t.Errorf("the setuid file: mode %o, %v", st.Mode&0o7777, err)
	}
	if err := unix.Lstat(filepath.Join(middle, "home/user/owned.txt"), &st); err != nil || st.Uid != 1000 || st.Mode&0o777 != 0o600 {
		t.Errorf("the file of user 1000: %+v, %v", st, err)
	}
	if report, err := layout.Check(context.Background(), store, layout.CheckOptions{Deep: true}); err != nil || !report.OK() || len(report.Leftovers) != 0 {
		t.Errorf("check --deep of the published store: %+v, %v", report, err)
	}

	// The same image again changes nothing: no ingest, no transaction.
	if err := publish(t, r.publication(t, true), ref, false); err != nil {
		t.Fatal(err)
	}
	if calls := r.calls(t); calls != "" {
		t.Errorf("republishing called %s", calls)
	}
	if r.exists(markerName) || r.exists(transactionFlag) {
		t.Error("a run left its transaction marker or a transaction")
	}
}
