package layout

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"
	"github.com/vbatts/tar-split/tar/asm"
	tsstorage "github.com/vbatts/tar-split/tar/storage"
	"go.podman.io/storage"
	"go.podman.io/storage/pkg/archive"
	"golang.org/x/sys/unix"
)

func TestChainID(t *testing.T) {
	d1 := digest.Digest("sha256:" + strings.Repeat("1", 64))
	d2 := digest.Digest("sha256:" + strings.Repeat("2", 64))
	if got := ChainID("", d1); got != d1.Encoded() {
		t.Errorf("base chain ID %s, want the diff ID hex", got)
	}
	want := digest.Canonical.FromString(d1.Encoded() + "+" + d2.Encoded()).Encoded()
	if got := ChainID(d1.Encoded(), d2); got != want {
		t.Errorf("child chain ID %s, want %s", got, want)
	}
}

func TestLayerChain(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	base, child, grandchild := commitTestChain(t, s)

	links := map[string]string{}
	for _, l := range []testLayer{base, child, grandchild} {
		links[l.meta.ID] = assertLayerDir(t, dir, l)
	}

	// Only the base layer has empty/ and no lower; children list their parents nearest first.
	assertBaseLayerDir(t, filepath.Join(dir, "overlay", base.meta.ID))
	wantLowers := map[string][2]string{
		child.meta.ID:      {"l/" + links[base.meta.ID], base.meta.ID},
		grandchild.meta.ID: {"l/" + links[child.meta.ID] + ":l/" + links[base.meta.ID], child.meta.ID + ":" + base.meta.ID},
	}
	for id, want := range wantLowers {
		assertLowers(t, filepath.Join(dir, "overlay", id), want)
	}

	// diff/ contents are exactly what was unpacked.
	assertMode(t, filepath.Join(dir, "overlay", child.meta.ID, "diff", "etc", "child"), 0o600)
	assertMode(t, filepath.Join(dir, "overlay", child.meta.ID, "diff", "opt"), 0o750)

	// layers.json: one record per layer, with the storage library's field names.
	var raw []map[string]json.RawMessage
	readJSONFile(t, filepath.Join(dir, "overlay-layers", "layers.json"), &raw)
	if len(raw) != 3 {
		t.Fatalf("layers.json has %d records, want 3", len(raw))
	}
	for _, key := range []string{"id", "created", "compressed-diff-digest", "compressed-size", "diff-digest", "diff-size", "compression", "uidset", "gidset"} {
		if _, ok := raw[1][key]; !ok {
			t.Errorf("layers.json record lacks %q: %s", key, mustJSON(t, raw[1]))
		}
	}
	if _, ok := raw[0]["parent"]; ok {
		t.Error("base layer record has a parent")
	}
	var layers []storage.Layer
	readJSONFile(t, filepath.Join(dir, "overlay-layers", "layers.json"), &layers)
	got := layers[1]
	m := child.meta
	if got.ID != m.ID || got.Parent != base.meta.ID || got.CompressedDigest != m.CompressedDigest ||
		got.CompressedSize != m.CompressedSize || got.UncompressedDigest != m.DiffID ||
		got.UncompressedSize != m.DiffSize || got.CompressionType != archive.Gzip || got.Created.IsZero() {
		t.Errorf("layers.json record %+v does not match %+v", got, m)
	}
	if uid := uint32(os.Getuid()); !slices.Equal(got.UIDs, []uint32{uid}) {
		t.Errorf("uidset %v, want [%d] (sorted, distinct)", got.UIDs, uid)
	}
	if _, ok := s.Layer(child.meta.ID); !ok || !s.HasLayer(grandchild.meta.ID) {
		t.Error("committed layers not found")
	}

	// Nothing is left in staging.
	if entries, _ := os.ReadDir(filepath.Join(dir, ".cargohold", "staging")); len(entries) != 0 {
		t.Errorf("staging not empty after commits: %v", entries)
	}
}

// assertBaseLayerDir checks a base layer's dir: empty/ (0755), no lower files.
func assertBaseLayerDir(t *testing.T, baseDir string) {
	t.Helper()
	if fi, err := os.Stat(filepath.Join(baseDir, "empty")); err != nil || !fi.IsDir() {
		t.Errorf("base layer has no empty/ dir: %v", err)
	}
	assertMode(t, filepath.Join(baseDir, "empty"), 0o755)
	for _, f := range []string{"lower", "lower-layers"} {
		if _, err := os.Lstat(filepath.Join(baseDir, f)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("base layer has %s (%v)", f, err)
		}
	}
}

// assertLowers checks a child layer's dir ldir: no empty/, and lower and lower-layers as want has them.
func assertLowers(t *testing.T, ldir string, want [2]string) {
	t.Helper()
	if _, err := os.Lstat(filepath.Join(ldir, "empty")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s has empty/ but a parent", ldir)
	}
	for i, f := range []string{"lower", "lower-layers"} {
		got, err := os.ReadFile(filepath.Join(ldir, f))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want[i] {
			t.Errorf("%s: %s = %q, want %q", ldir, f, got, want[i])
		}
		assertMode(t, filepath.Join(ldir, f), 0o644)
	}
}

// assertLayerDir checks a committed layer's dir, link, l/ symlink and tar-split, and returns its link.
func assertLayerDir(t *testing.T, dir string, l testLayer) string {
	t.Helper()
	linkRE := regexp.MustCompile(`^[A-Z2-7]{26}$`)
	ldir := filepath.Join(dir, "overlay", l.meta.ID)
	assertMode(t, ldir, 0o755)
	link, err := os.ReadFile(filepath.Join(ldir, "link"))
	if err != nil {
		t.Fatal(err)
	}
	if !linkRE.Match(link) {
		t.Errorf("layer %s: link %q is not 26 chars of A-Z2-7 without newline", l.meta.ID, link)
	}
	assertMode(t, filepath.Join(ldir, "link"), 0o644)

	// overlay/l/<link> -> ../<id>/diff, relative, resolving to the layer's diff dir.
	sym := filepath.Join(dir, "overlay", "l", string(link))
	target, err := os.Readlink(sym)
	if err != nil {
		t.Fatal(err)
	}
	if target != "../"+l.meta.ID+"/diff" {
		t.Errorf("l/%s -> %q, want ../%s/diff", link, target, l.meta.ID)
	}
	resolved, err := filepath.EvalSymlinks(sym)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := filepath.EvalSymlinks(filepath.Join(ldir, "diff")); resolved != want {
		t.Errorf("l/%s resolves to %s, want %s", link, resolved, want)
	}

	ts := filepath.Join(dir, "overlay-layers", l.meta.ID+".tar-split.gz")
	assertMode(t, ts, 0o644)
	checkTarSplit(t, ts, filepath.Join(ldir, "diff"), l.tar)
	return string(link)
}

// checkTarSplit reassembles the layer from its tar-split file and diff dir, as the storage library's
// Diff does, and compares it with the original tar.
func checkTarSplit(t *testing.T, tsPath, diffDir string, want []byte) {
	t.Helper()
	f, err := os.Open(tsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	out := asm.NewOutputTarStream(tsstorage.NewPathFileGetter(diffDir), tsstorage.NewJSONUnpacker(zr))
	defer func() { _ = out.Close() }()
	got, err := io.ReadAll(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: reassembled tar differs from the original (%d vs %d bytes)", tsPath, len(got), len(want))
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestCommitExistingLayer(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	first := commitTestLayer(t, s, "", baseEntries)
	before, err := os.ReadFile(filepath.Join(dir, "overlay-layers", "layers.json"))
	if err != nil {
		t.Fatal(err)
	}

	l, data := stageTar(t, s, baseEntries)
	stage := filepath.Dir(filepath.Dir(l.DiffDir()))
	if err := s.CommitLayer(l, layerMetaFor("", data)); err != nil {
		t.Fatalf("committing an existing layer: %v", err)
	}
	if _, err := os.Lstat(stage); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("staging dir of the duplicate layer still there (%v)", err)
	}
	after, err := os.ReadFile(filepath.Join(dir, "overlay-layers", "layers.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("layers.json changed by committing an existing layer")
	}
	links, _ := os.ReadDir(filepath.Join(dir, "overlay", "l"))
	if len(links) != 1 {
		t.Errorf("overlay/l has %d entries, want 1", len(links))
	}
	if !s.HasLayer(first.meta.ID) {
		t.Error("layer lost")
	}
	if err := l.Discard(); err != nil {
		t.Errorf("Discard after CommitLayer: %v", err)
	}
}

// A run that crashed after renaming a layer into overlay/ but before recording it leaves an unrecorded
// layer dir and l/ symlink; the next commit of that layer replaces both.
func TestCommitReplacesUnrecordedLayerDir(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	l, data := stageTar(t, s, baseEntries)
	meta := layerMetaFor("", data)
	if err := s.CommitLayer(l, meta); err != nil {
		t.Fatal(err)
	}
	oldLink, _ := os.ReadFile(filepath.Join(dir, "overlay", meta.ID, "link"))
	// Forget the record, as if layers.json had never been written.
	s.layers = nil
	if err := s.writeLayers(nil); err != nil {
		t.Fatal(err)
	}

	commitTestLayer(t, s, "", baseEntries)
	newLink, _ := os.ReadFile(filepath.Join(dir, "overlay", meta.ID, "link"))
	if bytes.Equal(oldLink, newLink) {
		t.Fatal("layer dir was not replaced")
	}
	if _, err := os.Lstat(filepath.Join(dir, "overlay", "l", string(oldLink))); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale l/%s still there (%v)", oldLink, err)
	}
	links, _ := os.ReadDir(filepath.Join(dir, "overlay", "l"))
	if len(links) != 1 {
		t.Errorf("overlay/l has %d entries, want 1", len(links))
	}
}

func TestCommitLayerRejectsBadMeta(t *testing.T) {
	s := openStore(t, t.TempDir())
	base := commitTestLayer(t, s, "", baseEntries)
	childTar, err := makeTar(childEntries)
	if err != nil {
		t.Fatal(err)
	}
	good := layerMetaFor(base.meta.ID, childTar)
	for name, mutate := range map[string]func(m *LayerMeta){
		"wrong chain ID":   func(m *LayerMeta) { m.ID = ChainID("", m.DiffID) },
		"unknown parent":   func(m *LayerMeta) { m.Parent = strings.Repeat("a", 64); m.ID = ChainID(m.Parent, m.DiffID) },
		"path in ID":       func(m *LayerMeta) { m.ID = "../../etc" },
		"invalid diff ID":  func(m *LayerMeta) { m.DiffID = "sha256:xyz" },
		"negative size":    func(m *LayerMeta) { m.DiffSize = -1 },
		"bad compressed":   func(m *LayerMeta) { m.CompressedDigest = "nope" },
		"parent not a hex": func(m *LayerMeta) { m.Parent = "x" },
	} {
		t.Run(name, func(t *testing.T) {
			l, _ := stageTar(t, s, childEntries)
			m := good
			mutate(&m)
			if err := s.CommitLayer(l, m); err == nil {
				t.Errorf("%s: CommitLayer succeeded", name)
			}
			if s.HasLayer(m.ID) {
				t.Errorf("%s: layer recorded", name)
			}
		})
	}
	if entries, _ := os.ReadDir(filepath.Join(s.Dir(), ".cargohold", "staging")); len(entries) != 0 {
		t.Errorf("failed commits left staging dirs: %v", entries)
	}
}

// The builder unpacks several layers at once and commits them in order, parents first.
func TestConcurrentStaging(t *testing.T) {
	s := openStore(t, t.TempDir())
	layers := [][]testEntry{baseEntries, childEntries, grandchildEntries}
	staged := make([]*StagedLayer, len(layers))
	tars := make([][]byte, len(layers))
	errs := make(chan error)
	for i, entries := range layers {
		go func() {
			var err error
			staged[i], tars[i], err = stageTarErr(s, "", entries)
			errs <- err
		}()
	}
	for range layers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	parent := ""
	for i := range layers {
		meta := layerMetaFor(parent, tars[i])
		if err := s.CommitLayer(staged[i], meta); err != nil {
			t.Fatal(err)
		}
		parent = meta.ID
	}
	if !s.HasLayer(parent) {
		t.Fatal("top layer missing")
	}
	// Committing a child before its parent fails and leaves nothing behind.
	l, data := stageTar(t, s, childEntries)
	orphan := layerMetaFor(strings.Repeat("c", 64), data)
	if err := s.CommitLayer(l, orphan); err == nil || !strings.Contains(err.Error(), "not committed") {
		t.Errorf("CommitLayer without parent: %v", err)
	}
}

// A layer's root is what the storage library's drivers make it: 0555 on a base layer, the parent's
// mode on a child (which, with the layer's "./" entry ignored, is 0555 again). The storage library's
// own vfs driver is asked for comparison.
func TestLayerRootMode(t *testing.T) {
	ref, refRoot := referenceStore(t)

	overlayDir, vfsDir := t.TempDir(), t.TempDir()
	overlay, vfs := openStore(t, overlayDir), openVFSStore(t, vfsDir)
	parent := ""
	for _, entries := range [][]testEntry{baseEntries, childEntries} {
		l := commitTestLayer(t, overlay, parent, entries)
		commitTestLayer(t, vfs, parent, entries)
		// Podman runs with the usual umask 022 (the tests' is 077), and the drivers' mkdir obeys it.
		old := unix.Umask(0o022)
		_, _, err := ref.PutLayer(l.meta.ID, parent, nil, "", false, nil, bytes.NewReader(l.tar))
		unix.Umask(old)
		if err != nil {
			t.Fatal(err)
		}
		want := rootMode(t, filepath.Join(refRoot, "vfs/dir", l.meta.ID))
		if want != 0o555|fs.ModeDir {
			t.Errorf("the storage library's vfs driver made layer root %v", want)
		}
		for _, root := range []string{filepath.Join(overlayDir, "overlay", l.meta.ID, "diff"), filepath.Join(vfsDir, "vfs/dir", l.meta.ID)} {
			if got := rootMode(t, root); got != want {
				t.Errorf("%s: mode %v, want %v as the storage library", root, got, want)
			}
		}
		parent = l.meta.ID
	}
}

func rootMode(t *testing.T, dir string) fs.FileMode {
	t.Helper()
	fi, err := os.Lstat(dir)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

func TestLowerDiffDirs(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	base := commitTestLayer(t, s, "", baseEntries)
	child := commitTestLayer(t, s, base.meta.ID, childEntries)
	diff := func(id string) string { return filepath.Join(dir, "overlay", id, "diff") }

	for _, tt := range []struct {
		name   string
		parent string
		want   []string
	}{
		{"a base layer", "", nil},
		{"on the base", base.meta.ID, []string{diff(base.meta.ID)}},
		{"on the child", child.meta.ID, []string{diff(child.meta.ID), diff(base.meta.ID)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l, err := s.StageLayer(tt.parent)
			if err != nil {
				t.Fatal(err)
			}
			got, err := l.LowerDiffDirs()
			_ = l.Discard()
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("on parent %q: LowerDiffDirs() = %q, %v; want %q", tt.parent, got, err, tt.want)
			}
		})
	}

	l, err := s.StageLayer(ChainID(child.meta.ID, digest.FromString("not committed")))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Discard() }()
	if _, err := l.LowerDiffDirs(); err == nil || !strings.Contains(err.Error(), "not committed yet") {
		t.Errorf("on an uncommitted parent: error %v, want one saying it is not committed yet", err)
	}
}

func TestChainIDs(t *testing.T) {
	a := digest.FromString("a")
	b := digest.FromString("b")
	ids := ChainIDs([]digest.Digest{a, b})
	if ids[0] != a.Encoded() {
		t.Errorf("base layer ID %s, want its diff ID hex", ids[0])
	}
	if want := digest.FromString(a.Encoded() + "+" + b.Encoded()).Encoded(); ids[1] != want {
		t.Errorf("child layer ID %s, want %s", ids[1], want)
	}
}

// OverlayLowerLen is the length of what a reader's overlay mount lists for an image's layers: the
// top layer's short link and its lower file's, each as an absolute path in the store.
func TestOverlayLowerLen(t *testing.T) {
	dir := t.TempDir()
	base, child, grandchild := commitTestChain(t, openStore(t, dir))
	lowerdir := func(top testLayer) string {
		layerDir := filepath.Join(dir, "overlay", top.meta.ID)
		link, err := os.ReadFile(filepath.Join(layerDir, "link"))
		if err != nil {
			t.Fatal(err)
		}
		entries := []string{"l/" + string(link)}
		if lower, err := os.ReadFile(filepath.Join(layerDir, "lower")); err == nil {
			entries = append(entries, strings.Split(string(lower), ":")...)
		}
		for i, e := range entries {
			entries[i] = filepath.Join(dir, "overlay", e)
		}
		return strings.Join(entries, ":")
	}
	for _, tt := range []struct {
		name string
		top  *testLayer // nil: no layer
		n    int
	}{
		{"no layer", nil, 0},
		{"a base layer", &base, 1},
		{"two layers", &child, 2},
		{"three layers", &grandchild, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			want := 0
			if tt.top != nil {
				want = len(lowerdir(*tt.top))
			}
			if got := OverlayLowerLen(dir, tt.n); got != want {
				t.Errorf("OverlayLowerLen(%d chars, %d) = %d, want %d", len(dir), tt.n, got, want)
			}
		})
	}
}
