package layout

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const orphanID = "0000000000000000000000000000000000000000000000000000000000000001"

// makeLeftovers plants what killed runs leave at each step of a publish (and of rm/gc), and a
// file that is not cargohold's. It returns the leftovers' paths.
func makeLeftovers(t *testing.T, dir string) []string {
	t.Helper()
	files := map[string]string{
		".cargohold/staging/0123/layer/diff/f":         "half unpacked",
		".cargohold/staging/removed-4567/diff/f":       "half removed",
		"overlay-layers/.tmp-layers.json-89ab":         "[",
		"overlay-images/.tmp-images.json-cdef":         "[",
		"overlay/" + orphanID + "/diff/etc/f":          "renamed, never recorded",
		"overlay/" + orphanID + "/link":                "ORPHANORPHANORPHANORPHAN22",
		"overlay-layers/" + orphanID + ".tar-split.gz": "x",
		"overlay-images/" + orphanID + "/manifest":     "{}",
		"overlay/not-a-layer-id/keep":                  "someone else's",
	}
	for p, data := range files {
		// Modes as cargohold writes them, whatever the umask (TestMain narrows it).
		full := filepath.Join(dir, p)
		for d := filepath.Dir(full); d != dir; d = filepath.Dir(d) {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(full, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"ORPHANORPHANORPHANORPHAN22": "../" + orphanID + "/diff",
		"DANGLINGDANGLINGDANGLING22": "../" + strings.Repeat("f", 64) + "/diff",
	} {
		if err := os.Symlink(target, filepath.Join(dir, "overlay/l", link)); err != nil {
			t.Fatal(err)
		}
	}
	return []string{
		".cargohold/staging/0123",
		".cargohold/staging/removed-4567",
		"overlay-images/" + orphanID,
		"overlay-images/.tmp-images.json-cdef",
		"overlay-layers/" + orphanID + ".tar-split.gz",
		"overlay-layers/.tmp-layers.json-89ab",
		"overlay/" + orphanID,
		"overlay/l/DANGLINGDANGLINGDANGLING22",
		"overlay/l/ORPHANORPHANORPHANORPHAN22",
	}
}

func leftoverPaths(ls []Leftover) []string {
	var ps []string
	for _, l := range ls {
		ps = append(ps, l.Path)
	}
	slices.Sort(ps)
	return ps
}

func TestOpenRemovesOrphans(t *testing.T) {
	dir := t.TempDir()
	layers, images := publishTestImages(t, dir)
	want := makeLeftovers(t, dir)
	slices.Sort(want)

	// A reader sees them as leftovers, not as problems.
	r, err := Check(t.Context(), dir, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() {
		t.Errorf("leftovers are reported as problems: %v", r.Problems)
	}
	if got := leftoverPaths(r.Leftovers); !slices.Equal(got, want) {
		t.Errorf("Check leftovers\n got %v\nwant %v", got, want)
	}

	s := openStore(t, dir)
	if got := leftoverPaths(s.Cleaned()); !slices.Equal(got, want) {
		t.Errorf("Cleaned\n got %v\nwant %v", got, want)
	}
	for _, p := range want {
		if _, err := os.Lstat(filepath.Join(dir, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("leftover %s still there (%v)", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "overlay/not-a-layer-id/keep")); err != nil {
		t.Errorf("a file that is not cargohold's was removed: %v", err)
	}
	for _, l := range layers {
		if !s.HasLayer(l.meta.ID) {
			t.Errorf("layer %s lost", l.meta.ID)
		}
	}
	for _, img := range images {
		if _, ok := s.Image(img.ID); !ok {
			t.Errorf("image %s lost", img.ID)
		}
	}
	closeStore(t, s)
	if err := os.RemoveAll(filepath.Join(dir, "overlay/not-a-layer-id")); err != nil {
		t.Fatal(err)
	}
	r, err = Check(t.Context(), dir, CheckOptions{Deep: true})
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || len(r.Leftovers) != 0 {
		t.Errorf("after Open: problems %v, leftovers %v", r.Problems, r.Leftovers)
	}
}

func TestNoWaitFailsWhileLocked(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	start := time.Now()
	_, err := OpenWithOptions(t.Context(), dir, Options{Lock: LockOptions{NoWait: true}})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("NoWait while locked: %v, want ErrLocked", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("NoWait took %v", time.Since(start))
	}
	t.Logf("error: %v", err)

	// Without NoWait, Waiting is told once who holds the lock, and the Open completes after Close.
	waiting := make(chan int, 2)
	opened := make(chan error)
	go func() {
		s2, err := OpenWithOptions(t.Context(), dir, Options{Lock: LockOptions{Waiting: func(pid int) { waiting <- pid }}})
		if err == nil {
			closeStore(t, s2)
		}
		opened <- err
	}()
	select {
	case pid := <-waiting:
		// The holder is this very process (fcntl locks are per process).
		if pid != os.Getpid() {
			t.Errorf("Waiting got holder pid %d, want %d", pid, os.Getpid())
		}
	case err := <-opened:
		t.Fatalf("second Open did not wait: %v", err)
	}
	closeStore(t, s)
	if err := <-opened; err != nil {
		t.Fatal(err)
	}
	if len(waiting) != 0 {
		t.Error("Waiting was called more than once")
	}
}

func TestCheckFindsProblems(t *testing.T) {
	for name, tc := range map[string]struct {
		damage     func(t *testing.T, dir string, layers []testLayer, images []imageMeta)
		want       string // in some problem's text
		repairable bool
	}{
		"duplicate name": {func(t *testing.T, dir string, _ []testLayer, images []imageMeta) {
			editFile(t, filepath.Join(dir, "overlay-images/images.json"), `"example.com/app:2"`, `"example.com/app:1"`)
		}, `name "example.com/app:1" is held by images`, false},
		"wrong chain ID": {func(t *testing.T, dir string, layers []testLayer, _ []imageMeta) {
			editFile(t, filepath.Join(dir, "overlay-layers/layers.json"), `"diff-digest":"`+layers[1].meta.DiffID.String(), `"diff-digest":"`+layers[2].meta.DiffID.String())
		}, "is not the chain ID", false},
		"parent loop": {func(t *testing.T, dir string, layers []testLayer, _ []imageMeta) {
			editFile(t, filepath.Join(dir, "overlay-layers/layers.json"), `"id":"`+layers[0].meta.ID+`",`, `"id":"`+layers[0].meta.ID+`","parent":"`+layers[2].meta.ID+`",`)
		}, "parent chain loops", false},
		"layer of unknown size": {func(t *testing.T, dir string, layers []testLayer, _ []imageMeta) {
			// the recorded size becomes -1, the number after it a field nobody reads
			editFile(t, filepath.Join(dir, "overlay-layers/layers.json"), `"diff-digest":"`+layers[1].meta.DiffID.String()+`","diff-size":`,
				`"diff-digest":"`+layers[1].meta.DiffID.String()+`","diff-size":-1,"unread":`)
		}, "has no known size", false},
		"torn layers.json": {func(t *testing.T, dir string, _ []testLayer, _ []imageMeta) {
			if err := os.WriteFile(filepath.Join(dir, "overlay-layers/layers.json"), []byte(`[{"id":`), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "layers.json is not valid JSON", false},
		"missing l/ link": {func(t *testing.T, dir string, layers []testLayer, _ []imageMeta) {
			link, _ := os.ReadFile(filepath.Join(dir, "overlay", layers[1].meta.ID, "link"))
			if err := os.Remove(filepath.Join(dir, "overlay/l", string(link))); err != nil {
				t.Fatal(err)
			}
		}, "does not lead to its diff dir", true},
		"unreadable metadata": {func(t *testing.T, dir string, layers []testLayer, images []imageMeta) {
			for _, p := range []string{"overlay-images/" + images[0].ID + "/manifest", "overlay/" + layers[0].meta.ID + "/link"} {
				if err := os.Chmod(filepath.Join(dir, p), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Chmod(filepath.Join(dir, "overlay", layers[2].meta.ID), 0o700); err != nil {
				t.Fatal(err)
			}
		}, "other users cannot read it", true},
		"changed file (deep)": {func(t *testing.T, dir string, layers []testLayer, _ []imageMeta) {
			if err := os.WriteFile(filepath.Join(dir, "overlay", layers[1].meta.ID, "diff/etc/child"), []byte("CHILD\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "regenerat", false}, // the tar-split CRC or the digest catches it
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			layers, images := publishTestImages(t, dir)
			tc.damage(t, dir, layers, images)
			r, err := Check(t.Context(), dir, CheckOptions{Deep: true})
			if err != nil {
				t.Fatal(err)
			}
			if r.OK() || !slices.ContainsFunc(r.Problems, func(p Problem) bool { return strings.Contains(p.String(), tc.want) }) {
				t.Fatalf("want a problem containing %q, got %v", tc.want, r.Problems)
			}
			for _, p := range r.Problems {
				t.Logf("problem: %s", p)
			}
			if strings.Contains(name, "deep") {
				if r, err := Check(t.Context(), dir, CheckOptions{}); err != nil || !r.OK() {
					t.Errorf("a check that is not deep reads no file contents, but found %v (%v)", r.Problems, err)
				}
			}
			if tc.repairable {
				repairAndCheck(t, dir)
			}
		})
	}
}

// repairAndCheck runs Repair on the store at dir and checks that it did something and that the store
// is then without problems.
func repairAndCheck(t *testing.T, dir string) {
	t.Helper()
	s := openStore(t, dir)
	done, err := s.Repair(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(done) == 0 {
		t.Error("Repair says it did nothing")
	}
	for _, d := range done {
		t.Logf("repaired: %s", d)
	}
	closeStore(t, s)
	if r, err := Check(t.Context(), dir, CheckOptions{Deep: true}); err != nil || !r.OK() {
		t.Errorf("after Repair: %v (%v)", r.Problems, err)
	}
}

func editFile(t *testing.T, p, old, new string) {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(old)) {
		t.Fatalf("%s does not contain %s", p, old)
	}
	if err := os.WriteFile(p, bytes.Replace(data, []byte(old), []byte(new), 1), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Open reads overlay/l/'s links only when its names or the recorded layers changed since the links
// were last all found good: a link a crashed run left is removed even after a no-op open recorded l/.
func TestOpenSkipsUnchangedLinks(t *testing.T) {
	dir := t.TempDir()
	publishTestImages(t, dir)
	for range 2 { // the first open records l/, the second finds the record matching
		closeStore(t, openOnceForTest(t, dir))
	}
	if _, err := os.Stat(filepath.Join(dir, linksCheckedName)); err != nil {
		t.Fatalf("no record of the checked links: %v", err)
	}

	orphan := filepath.Join(dir, "overlay/l", "ORPHANORPHANORPHANORPHAN22")
	if err := os.Symlink("../"+strings.Repeat("e", 64)+"/diff", orphan); err != nil {
		t.Fatal(err)
	}
	s := openOnceForTest(t, dir)
	if got := leftoverPaths(s.Cleaned()); !slices.Equal(got, []string{"overlay/l/ORPHANORPHANORPHANORPHAN22"}) {
		t.Errorf("Cleaned after a link was added = %v, want the new link", got)
	}
	closeStore(t, s)

	// A link that keeps its name but leads elsewhere is no crash's doing: Open, finding l/ as it
	// recorded it, leaves it; Check, which reads every link, reports it.
	links, err := os.ReadDir(filepath.Join(dir, "overlay/l"))
	if err != nil || len(links) == 0 {
		t.Fatalf("overlay/l: %v, %d links", err, len(links))
	}
	moved := filepath.Join(dir, "overlay/l", links[0].Name())
	if err := os.Remove(moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../"+strings.Repeat("e", 64)+"/diff", moved); err != nil {
		t.Fatal(err)
	}
	s = openOnceForTest(t, dir)
	if got := s.Cleaned(); len(got) != 0 {
		t.Errorf("Cleaned with l/ unchanged = %v, want nothing (no link read)", got)
	}
	closeStore(t, s)
	r, err := Check(t.Context(), dir, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := leftoverPaths(r.Leftovers); !slices.Equal(got, []string{"overlay/l/" + links[0].Name()}) {
		t.Errorf("Check leftovers = %v, want the moved link", got)
	}
}

func openOnceForTest(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := OpenWithOptions(t.Context(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
