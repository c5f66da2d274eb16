package layout

import (
	"bytes"
	"errors"
	"hash/crc64"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cargohold/cargohold/internal/testfs"
	"golang.org/x/sys/unix"
)

func TestParseDedup(t *testing.T) {
	for in, want := range map[string]Dedup{"": DedupAuto, "auto": DedupAuto, "off": DedupOff, "hardlink": DedupHardlink} {
		if got, err := ParseDedup(in); err != nil || got != want {
			t.Errorf("ParseDedup(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseDedup("reflink"); err == nil || !strings.Contains(err.Error(), "want auto, off or hardlink") {
		t.Errorf("ParseDedup(reflink): %v", err)
	}
}

// auto shares extents only where a clone in the store works; the probe leaves nothing behind.
func TestSharingProbe(t *testing.T) {
	for _, c := range []struct {
		fs    string
		dedup Dedup
		want  Sharing
	}{
		{"xfs", DedupAuto, ShareReflink}, {"ext4", DedupAuto, ShareNone}, {"xfs", DedupOff, ShareNone},
		{"ext4", DedupHardlink, ShareHardlink}, {"xfs", DedupHardlink, ShareHardlink},
	} {
		t.Run(c.fs+"-"+string(c.dedup), func(t *testing.T) {
			mnt := testfs.Ext4(t, 64<<20)
			if c.fs == "xfs" {
				mnt = testfs.XFS(t, 0)
			}
			s, err := OpenWithOptions(t.Context(), filepath.Join(mnt, "store"), Options{Create: true, Dedup: c.dedup})
			if err != nil {
				t.Fatal(err)
			}
			defer closeStore(t, s)
			if got, err := s.Sharing(); err != nil || got != c.want {
				t.Errorf("Sharing() = %v, %v; want %v", got, err, c.want)
			}
			if entries, err := os.ReadDir(filepath.Join(s.Dir(), stagingDir)); err != nil || len(entries) > 0 {
				t.Errorf("staging holds %v after the probe (%v)", entries, err)
			}
		})
	}
}

func TestFileMetaKey(t *testing.T) {
	base := FileMeta{UID: 1, GID: 2, Mode: 0o4755, Mtime: unix.Timespec{Sec: 10, Nsec: 20},
		Xattrs: map[string][]byte{"user.a": []byte("1"), "security.capability": {1, 2}}}
	variants := map[string]func(m *FileMeta){
		"uid":   func(m *FileMeta) { m.UID++ },
		"gid":   func(m *FileMeta) { m.GID++ },
		"mode":  func(m *FileMeta) { m.Mode = 0o755 },
		"mtime": func(m *FileMeta) { m.Mtime.Nsec++ },
		"xattr": func(m *FileMeta) { m.Xattrs = map[string][]byte{"user.a": []byte("2"), "security.capability": {1, 2}} },
		"fewer": func(m *FileMeta) { m.Xattrs = map[string][]byte{"user.a": []byte("1")} },
	}
	for name, change := range variants {
		m := base
		change(&m)
		if m.Key() == base.Key() || m.Equal(base) {
			t.Errorf("a file differing in %s has the same key or counts as equal", name)
		}
	}
	same := base
	same.Xattrs = map[string][]byte{"security.capability": {1, 2}, "user.a": []byte("1")}
	if same.Key() != base.Key() || !same.Equal(base) {
		t.Error("equal metadata (xattrs in another order) has another key")
	}
	labelled := same
	labelled.Xattrs = map[string][]byte{"security.capability": {1, 2}, "user.a": []byte("1"), "security.selinux": []byte("x")}
	if labelled.Key() != base.Key() || labelled.Equal(base) {
		t.Error("an SELinux label changes the key (it is the host's, not the image's), or does not count for Equal")
	}
}

// keyOf is the index key of the file at p, as the unpacker computes it.
func keyOf(t *testing.T, p string) FileKey {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer closeQuietly(f)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := ReadFileMeta(f)
	if err != nil {
		t.Fatal(err)
	}
	return FileKey{Size: int64(len(data)), CRC: crc64.Checksum(data[:min(len(data), KeyPrefix)], crcTable), Meta: meta.Key()}
}

// commitIndexedLayer commits entries as a layer whose regular files are in its file index, as the
// unpacker adds them.
func commitIndexedLayer(t *testing.T, s *Store, parent string, entries []testEntry) testLayer {
	t.Helper()
	l, data := stageTarOn(t, s, parent, entries)
	for _, e := range entries {
		if !e.dir && e.data != "" {
			if err := l.Files().Add(e.name, keyOf(t, filepath.Join(l.DiffDir(), e.name))); err != nil {
				t.Fatal(err)
			}
		}
	}
	meta := layerMetaFor(parent, data)
	if err := s.CommitLayer(l, meta); err != nil {
		t.Fatal(err)
	}
	return testLayer{meta: meta, tar: data}
}

func openSharing(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := OpenWithOptions(t.Context(), dir, Options{Create: true, Dedup: DedupHardlink})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeStore(t, s) })
	return s
}

// candidates opens what a new layer of s finds for the file at p.
func candidates(t *testing.T, s *Store, p string) []string {
	t.Helper()
	l, err := s.StageLayer("")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Discard() }()
	var found []string
	for _, c := range l.Files().Candidates(keyOf(t, p)) {
		f, err := c.Open()
		if err != nil {
			continue
		}
		found = append(found, f.Name())
		closeQuietly(f)
	}
	return found
}

func TestFileIndexFollowsTheLayers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s := openSharing(t, dir)
	base := commitIndexedLayer(t, s, "", baseEntries)
	putImage(t, s, testImageMeta(t, []testLayer{base}, []string{"localhost/indexed:1"}, "1")) // (a store with no image goes on Close)
	hello := filepath.Join(dir, "overlay", base.meta.ID, "diff/etc/hello")
	indexed, err := os.ReadFile(filepath.Join(dir, filesIndexPath(base.meta.ID)))
	if err != nil {
		t.Fatalf("the committed layer has no file index: %v", err)
	}
	if got := candidates(t, s, hello); !slices.Equal(got, []string{hello}) {
		t.Errorf("a new layer finds %v for etc/hello, want the base layer's", got)
	}

	// Lost: rebuilt from the tar-split and the files when a publish needs the index.
	if err := os.Remove(filepath.Join(dir, filesIndexPath(base.meta.ID))); err != nil {
		t.Fatal(err)
	}
	closeStore(t, s)
	s = openSharing(t, dir)
	if got := candidates(t, s, hello); !slices.Equal(got, []string{hello}) {
		t.Errorf("with its index lost, a new layer finds %v for etc/hello, want the base layer's", got)
	}
	if rebuilt, err := os.ReadFile(filepath.Join(dir, filesIndexPath(base.meta.ID))); err != nil || !sameIndex(t, rebuilt, indexed) {
		t.Errorf("the rebuilt index differs from the one the layer was committed with (%v)", err)
	}

	// The index of a layer that a crash left unrecorded is a leftover.
	stale := filesIndexPath(strings.Repeat("ab", 32))
	if err := os.WriteFile(filepath.Join(dir, stale), encodeFilesIndex(nil), 0o644); err != nil {
		t.Fatal(err)
	}
	closeStore(t, s)
	s = openSharing(t, dir)
	if !slices.ContainsFunc(s.Cleaned(), func(l Leftover) bool { return l.Path == stale && l.kind == leftoverFilesIndex }) {
		t.Errorf("open removed %v, not the index of an unrecorded layer", s.Cleaned())
	}

	// gc of the layer drops its index: nothing finds its files any more.
	if _, err := s.Remove(t.Context(), "localhost/indexed:1", RemoveOptions{Now: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GC(t.Context(), 0, time.Now(), false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, filesIndexPath(base.meta.ID))); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the index of a removed layer is still there (%v)", err)
	}
	other := filepath.Join(t.TempDir(), "hello")
	if err := os.WriteFile(other, []byte("hello from the base layer\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := candidates(t, s, other); len(got) > 0 {
		t.Errorf("after gc, a new layer finds %v", got)
	}
}

func sameIndex(t *testing.T, a, b []byte) bool {
	t.Helper()
	ea, err1 := parseFilesIndex(a)
	eb, err2 := parseFilesIndex(b)
	return err1 == nil && err2 == nil && slices.Equal(ea, eb)
}

// Repair rebuilds every file index that is missing, unreadable or lying, and leaves the right ones.
func TestRepairRebuildsTheFileIndex(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s := openSharing(t, dir)
	layers := []testLayer{commitIndexedLayer(t, s, "", baseEntries)}
	layers = append(layers, commitIndexedLayer(t, s, layers[0].meta.ID, childEntries))
	layers = append(layers, commitIndexedLayer(t, s, layers[1].meta.ID, []testEntry{{name: "srv", dir: true, mode: 0o755},
		{name: "srv/a", data: "a\n", mode: 0o644}}))
	index := func(i int) string { return filepath.Join(dir, filesIndexPath(layers[i].meta.ID)) }
	good, err := os.ReadFile(index(2))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(index(0)); err != nil {
		t.Fatal(err)
	}
	lie := encodeFilesIndex([]indexEntry{{key: FileKey{Size: 3, CRC: 1}, path: "etc/child"}})
	if err := os.WriteFile(index(1), lie, 0o644); err != nil {
		t.Fatal(err)
	}
	done, err := s.Repair(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != 2 || !strings.Contains(done[0]+done[1], layers[0].meta.ID) || !strings.Contains(done[0]+done[1], layers[1].meta.ID) {
		t.Errorf("repair did %q; want the indexes of layers 0 and 1 rebuilt", done)
	}
	for i := range layers {
		data, err := os.ReadFile(index(i))
		if err != nil {
			t.Fatal(err)
		}
		built, err := s.buildLayerFiles(layers[i].meta.ID)
		if err != nil || !sameIndex(t, data, encodeFilesIndex(built)) {
			t.Errorf("layer %d's index is not what its files say after repair (%v)", i, err)
		}
	}
	if data, _ := os.ReadFile(index(2)); !bytes.Equal(data, good) {
		t.Error("repair rewrote a right index")
	}
	if done, err := s.Repair(t.Context()); err != nil || len(done) > 0 {
		t.Errorf("a second repair did %q, %v", done, err)
	}
}

// A store that never shared file data gets no index from Repair.
func TestRepairWithoutSharing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s, err := OpenWithOptions(t.Context(), dir, Options{Create: true, Dedup: DedupOff})
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore(t, s)
	commitTestLayer(t, s, "", baseEntries)
	if done, err := s.Repair(t.Context()); err != nil || len(done) > 0 {
		t.Errorf("repair did %q, %v", done, err)
	}
	if _, err := os.Stat(filepath.Join(dir, filesDir)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("repair made %s (%v)", filesDir, err)
	}
}

// An index entry is only a hint: Open takes nothing but a regular file of the size the key says, inside
// the store, through no symlink.
func TestCandidateOpenRefusesWhatTheKeyIsNot(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s := openSharing(t, dir)
	l, _ := stageTar(t, s, []testEntry{{name: "etc", dir: true, mode: 0o755}, {name: "etc/f", data: "12345", mode: 0o644}})
	defer func() { _ = l.Discard() }()
	if err := os.Symlink("f", filepath.Join(l.DiffDir(), "etc/link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("etc", filepath.Join(l.DiffDir(), "dirlink")); err != nil {
		t.Fatal(err)
	}
	ix, err := s.loadFileIndex()
	if err != nil {
		t.Fatal(err)
	}
	open := func(p string, size int64) error {
		f, err := Candidate{s: s, ix: ix, key: FileKey{Size: size}, ref: fileRef{staged: l, path: p}}.Open()
		if err == nil {
			closeQuietly(f)
		}
		return err
	}
	if err := open("etc/f", 5); err != nil {
		t.Errorf("a regular file of the right size: %v", err)
	}
	for p, size := range map[string]int64{"etc/f": 6, "etc/link": 5, "etc": 5, "dirlink/f": 5, "etc/missing": 5} {
		if open(p, size) == nil {
			t.Errorf("Open took %s as a file of %d bytes", p, size)
		}
	}
	for _, line := range []string{`5 0 0 "../x"`, `5 0 0 "/etc/passwd"`, `5 0 0 "a/../../b"`, `0 0 0 "a"`, `5 zz 0 "a"`, `5 0 0 a`} {
		if _, err := parseIndexLine(line); err == nil {
			t.Errorf("parseIndexLine(%s) accepted it", line)
		}
	}
}
