package cvmfs

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cargohold/cargohold/layout"
)

func TestDecide(t *testing.T) {
	m := &Marker{PID: 1}
	for _, tc := range []struct {
		name          string
		marker        *Marker
		open, running bool
		want          staleAction
	}{
		{"nothing", nil, false, false, noneStale},
		{"a transaction without a marker: someone else's", nil, true, false, refuseForeign},
		{"a marker and a transaction: a killed run's", m, true, false, abortStale},
		{"a marker without a transaction: killed after its publish or abort", m, false, false, clearMarker},
		{"a marker of a run that still runs, in a transaction", m, true, true, refuseRunning},
		{"a marker of a run that still runs, before its transaction", m, false, true, refuseRunning},
	} {
		if got := decide(tc.marker, tc.open, tc.running); got != tc.want {
			t.Errorf("%s: decide = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// vfsPublication is a Publication of a vfs store (written inside a transaction) in r, whose warnings
// go to *warned.
func (r *testRepo) vfsPublication(t *testing.T, warned *[]string) *Publication {
	t.Helper()
	repo := &Repo{Name: "test.repo", Mountpoint: r.dir, ClientView: r.dir, IncludeXattrs: true, ConfigFile: "server.conf", Spool: r.spool}
	p, err := newPublication(repo, filepath.Join(r.dir, "images"), layout.VFS)
	if err != nil {
		t.Fatal(err)
	}
	p.Server = r.server
	p.Warn = func(msg string) { *warned = append(*warned, msg) }
	return p
}

// deadMarker writes the marker of a cargohold that was killed while it ran opening, as
// writeMarker does: a process that ran on this machine, and exited.
func (r *testRepo) deadMarker(t *testing.T, opening string) *Marker {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m := newMarker("test.repo", filepath.Join(r.dir, "images"), opening)
	m.PID = cmd.Process.Pid
	m.PIDStart, _ = processStart(m.PID)
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := writeMarker(&Repo{Name: "test.repo", Spool: r.spool}, m); err != nil {
		t.Fatal(err)
	}
	return m
}

func (r *testRepo) exists(name string) bool {
	_, err := os.Lstat(filepath.Join(r.spool, name))
	return err == nil
}

func (r *testRepo) openTransaction(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(r.spool, transactionFlag), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A run finds a transaction that a killed run of cargohold left open (its marker says so): it aborts
// it, says so, and publishes.
func TestStaleTransactionIsAborted(t *testing.T) {
	r := newTestRepo(t)
	m := r.deadMarker(t, "transaction")
	r.openTransaction(t)
	var warned []string
	p := r.vfsPublication(t, &warned)
	dir, err := p.Begin()
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	if calls := r.calls(t); calls != "abort -f test.repo|transaction test.repo" {
		t.Errorf("calls %q: want the stale transaction aborted, then one of this run's own", calls)
	}
	if len(warned) != 1 || !strings.Contains(warned[0], "repository test.repo was left in a transaction by cargohold pid "+strconv.Itoa(m.PID)) ||
		!strings.Contains(warned[0], "(killed?); aborted it (cvmfs_server abort -f test.repo)") {
		t.Errorf("what the run said: %q", warned)
	}
	// While the transaction is open, the marker is this run's.
	now, err := readMarker(p.Repo)
	if err != nil || now == nil || now.PID != os.Getpid() || now.Opening != "transaction" || now.Group == 0 || now.Store != p.Store {
		t.Errorf("the marker during the transaction: %+v, %v", now, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := p.Finish(context.Background(), false); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if calls := r.calls(t); calls != "publish test.repo" {
		t.Errorf("calls %q", calls)
	}
	if r.exists(markerName) || r.exists(transactionFlag) {
		t.Error("after the publish: the marker or the transaction is left")
	}
}

// A transaction that cargohold did not open (no marker) is someone else's: refused, left alone.
func TestForeignTransactionIsLeftAlone(t *testing.T) {
	r := newTestRepo(t)
	r.openTransaction(t)
	var warned []string
	_, err := r.vfsPublication(t, &warned).Begin()
	if !errors.Is(err, ErrForeignTransaction) || !strings.Contains(err.Error(), "someone is changing it by hand, so it is left alone; nothing was published") {
		t.Errorf("Begin: %v", err)
	}
	if calls := r.calls(t); calls != "" {
		t.Errorf("calls %q: want none", calls)
	}
	if !r.exists(transactionFlag) || r.exists(markerName) {
		t.Error("the transaction must stay open, and no marker be written")
	}
}

// A marker without a transaction: the killed run's publish (or abort) had ended; the marker goes.
func TestMarkerWithoutTransactionIsCleared(t *testing.T) {
	r := newTestRepo(t)
	r.deadMarker(t, "transaction")
	var warned []string
	p := r.vfsPublication(t, &warned)
	if _, err := p.Begin(); err != nil {
		t.Fatal(err)
	}
	if calls := r.calls(t); calls != "transaction test.repo" {
		t.Errorf("calls %q: want no abort", calls)
	}
	if len(warned) != 1 || !strings.Contains(warned[0], "ended without removing its transaction marker (killed?); the repository is not in a transaction") {
		t.Errorf("what the run said: %q", warned)
	}
	if err := p.Finish(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if calls := r.calls(t); calls != "abort -f test.repo" || r.exists(markerName) || r.exists(transactionFlag) {
		t.Errorf("a failed run: calls %q, marker left %v, transaction left %v", calls, r.exists(markerName), r.exists(transactionFlag))
	}
}

// The marker of a run that still runs (another cargohold, outside the wrapper's lock) is not stale.
func TestRunningMarkerIsRefused(t *testing.T) {
	r := newTestRepo(t)
	if err := writeMarker(&Repo{Name: "test.repo", Spool: r.spool}, newMarker("test.repo", "/cvmfs/test.repo/images", "ingest")); err != nil {
		t.Fatal(err)
	}
	r.openTransaction(t)
	var warned []string
	_, err := r.vfsPublication(t, &warned).Begin()
	if err == nil || !strings.Contains(err.Error(), "is still publishing into repository test.repo") {
		t.Errorf("Begin: %v", err)
	}
	if calls := r.calls(t); calls != "" || !r.exists(markerName) {
		t.Errorf("calls %q, marker kept %v: want none, and the marker kept", calls, r.exists(markerName))
	}
}

// A run whose abort fails leaves its transaction open and its marker: the next run aborts it.
func TestFailedAbortKeepsTheMarker(t *testing.T) {
	r := newTestRepo(t)
	var warned []string
	p := r.vfsPublication(t, &warned)
	if _, err := p.Begin(); err != nil {
		t.Fatal(err)
	}
	failAbort := filepath.Join(filepath.Dir(r.log), "fail-abort")
	if err := os.WriteFile(failAbort, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := p.Finish(context.Background(), true)
	if err == nil || !strings.Contains(err.Error(), "left in the transaction this run opened; the next run aborts it") {
		t.Errorf("Finish: %v", err)
	}
	if !r.exists(markerName) || !r.exists(transactionFlag) {
		t.Fatal("the marker and the transaction must stay")
	}
	// this process still runs: the next run's marker must look like a killed run's to be aborted
	m, err := readMarker(p.Repo)
	if err != nil {
		t.Fatal(err)
	}
	m.BootID = "a boot before"
	if err := writeMarker(p.Repo, m); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(failAbort); err != nil {
		t.Fatal(err)
	}
	r.calls(t)
	if _, err := r.vfsPublication(t, &warned).Begin(); err != nil {
		t.Fatal(err)
	}
	if calls := r.calls(t); calls != "abort -f test.repo|transaction test.repo" {
		t.Errorf("the next run's calls: %q", calls)
	}
}

// The shadow of a killed run (its staging dir, which no live run holds) goes at the next run's
// Begin; that of a live run stays.
func TestDeadShadowsAreRemoved(t *testing.T) {
	r := newTestRepo(t)
	var warned []string
	p := r.vfsPublication(t, &warned)
	root := t.TempDir()
	dead := filepath.Join(root, "cargohold-cvmfs-test.repo-1")
	live := filepath.Join(root, "cargohold-cvmfs-test.repo-2")
	other := filepath.Join(root, "cargohold-cvmfs-other.repo-3")
	for _, d := range []string{dead, live, other} {
		if err := os.MkdirAll(filepath.Join(d, "store", "overlay"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	held, err := holdDir(live)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = held.Close() }()
	p.removeDeadShadows(root)
	for d, want := range map[string]bool{dead: false, live: true, other: true} {
		if _, err := os.Stat(d); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", d, err == nil, want)
		}
	}
	if len(warned) != 1 || warned[0] != "removed "+dead+", the shadow of a run that was killed" {
		t.Errorf("what the run said: %q", warned)
	}
}
