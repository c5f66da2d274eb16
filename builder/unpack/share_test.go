package unpack_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cargohold/cargohold/builder/unpack"
	"github.com/cargohold/cargohold/internal/testenv"
	"github.com/cargohold/cargohold/internal/testfs"
	"github.com/cargohold/cargohold/internal/testimage"
	"github.com/cargohold/cargohold/layout"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// The decisions of shared file data (share.go), on real filesystems: which files may share and how
// (reflinks: equal bytes; hard links: equal bytes and metadata), tar hard-link groups, EMLINK, an index
// that lies, and a crash between sharing and recording. Layers go through a real store (layout) as a
// publish puts them there: staged, unpacked with the store's LayerFiles, committed.

var shareTime = time.Date(2023, 4, 5, 6, 7, 8, 123456789, time.UTC)

func openShareStore(t *testing.T, dir string, dedup layout.Dedup) *layout.Store {
	t.Helper()
	s, err := layout.OpenWithOptions(context.Background(), filepath.Join(dir, "store"), layout.Options{Create: true, Dedup: dedup})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// publishLayer unpacks entries as a layer on parent into s, as a publish does, and commits it.
func publishLayer(t *testing.T, s *layout.Store, parent string, entries ...testimage.Entry) (string, unpack.Result) {
	t.Helper()
	l, res, err := stageLayer(s, parent, entries)
	if err != nil {
		t.Fatal(err)
	}
	id := layout.ChainID(parent, res.DiffID)
	if err := s.CommitLayer(l, layout.LayerMeta{ID: id, Parent: parent, DiffID: res.DiffID, DiffSize: res.DiffSize,
		UIDs: res.UIDs, GIDs: res.GIDs}); err != nil {
		t.Fatal(err)
	}
	return id, res
}

func stageLayer(s *layout.Store, parent string, entries []testimage.Entry) (*layout.StagedLayer, unpack.Result, error) {
	var buf bytes.Buffer
	for i := range entries {
		entries[i].Header.Format = tar.FormatPAX
		if entries[i].Header.ModTime.IsZero() {
			entries[i].Header.ModTime = shareTime
		}
	}
	if err := testimage.WriteTar(&buf, entries); err != nil {
		return nil, unpack.Result{}, err
	}
	l, err := s.StageLayer(parent)
	if err != nil {
		return nil, unpack.Result{}, err
	}
	res, err := unpack.Layer(context.Background(), &buf, l.DiffDir(), l.TarSplit(), unpack.Options{Apply: l.AppliesChanges(), Files: l.Files()})
	if err == nil { // at commit, as builder does
		err = unpack.LinkEqualFiles(l.DiffDir(), &res, l.Files())
	}
	if err != nil {
		_ = l.Discard()
	}
	return l, res, err
}

// keepImage records an image of the one layer a (its unpack result res), named name: a store whose
// open created it, and that holds no image when it is closed, is removed again.
func keepImage(t *testing.T, s *layout.Store, res unpack.Result, name string) {
	t.Helper()
	config, err := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{res.DiffID.String()}}})
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest.FromBytes(config), "size": len(config)},
		"layers": []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": res.DiffID, "size": res.DiffSize}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutImage(layout.Image{Config: config, Manifest: manifest, Names: []string{name}}); err != nil {
		t.Fatal(err)
	}
}

func diffDir(t *testing.T, s *layout.Store, id string) string {
	t.Helper()
	dir, ok := s.LayerDiffDir(id)
	if !ok {
		t.Fatalf("layer %s is not recorded", id)
	}
	return dir
}

func random(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

type fileInfo struct {
	ino, nlink uint64
	uid, gid   uint32
	mode       uint32
	mtime      unix.Timespec
	sum        [32]byte
	xattr      string // security.capability, if any
}

func stat(t *testing.T, p string) fileInfo {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	x := make([]byte, 64)
	n, err := unix.Lgetxattr(p, "security.capability", x)
	if err != nil {
		n = 0
	}
	return fileInfo{ino: st.Ino, nlink: uint64(st.Nlink), uid: st.Uid, gid: st.Gid, mode: st.Mode & 0o7777, mtime: st.Mtim,
		sum: sha256.Sum256(data), xattr: string(x[:n])}
}

func at(e testimage.Entry, t time.Time) testimage.Entry {
	e.Header.ModTime = t
	return e
}

func TestReflinkSharesEqualBytesOnly(t *testing.T) {
	testenv.RequireRoot(t)
	s := openShareStore(t, testfs.XFS(t, 0), layout.DedupAuto)
	if sh, err := s.Sharing(); err != nil || sh != layout.ShareReflink {
		t.Fatalf("auto on XFS with reflink=1: sharing %v, %v; want reflink", sh, err)
	}
	big := random(1, 3<<20)
	grown := append(append([]byte{}, big[:2<<20]...), random(2, 1<<20)...) // equal but for the last MiB
	samePrefix := append(append([]byte{}, big[:1<<20]...), random(3, 2<<20)...)
	a, _ := publishLayer(t, s, "",
		testimage.File("small.txt", 0o644, "small and shared\n"),
		testimage.BinaryFile("big.bin", 0o644, big),
		testimage.SparseFile("sparse.img", 0o644, 8<<20, 4<<20, []byte("data")),
	)
	used := testfs.Used(t, s.Dir())
	b, res := publishLayer(t, s, "",
		// The same bytes with other metadata: shared, with the metadata of its own tar header.
		at(testimage.File("x/small.txt", 0o4750, "small and shared\n").Owner(1000, 42).
			Xattr("security.capability", testimage.CapNetBindService), shareTime.Add(time.Hour)),
		testimage.BinaryFile("x/big.bin", 0o600, big),
		testimage.BinaryFile("x/grown.bin", 0o644, grown),
		testimage.BinaryFile("x/same-prefix.bin", 0o644, samePrefix),
		testimage.SparseFile("x/sparse.img", 0o644, 8<<20, 4<<20, []byte("data")),
		testimage.File("x/other.txt", 0o644, "small and SHARED\n"), // same size, other bytes
	)
	da, db := diffDir(t, s, a), diffDir(t, s, b)
	sa, sb := stat(t, filepath.Join(da, "small.txt")), stat(t, filepath.Join(db, "x/small.txt"))
	want := fileInfo{ino: sb.ino, nlink: 1, uid: 1000, gid: 42, mode: 0o4750, mtime: unix.NsecToTimespec(shareTime.Add(time.Hour).UnixNano()),
		sum: sa.sum, xattr: string(testimage.CapNetBindService)}
	if sb != want || sb.ino == sa.ino {
		t.Errorf("shared small.txt: %+v, want its own inode with %+v", sb, want)
	}
	for _, c := range []struct {
		name   string
		shared int64
	}{{"small.txt", 4096}, {"big.bin", 3 << 20}, {"grown.bin", 2 << 20}, {"same-prefix.bin", 1 << 20}, {"sparse.img", 64 << 10}} { // (the 64 KiB block holding its data)
		in := c.name
		if c.name == "grown.bin" || c.name == "same-prefix.bin" {
			in = "big.bin"
		}
		got := testfs.SharedBytes(t, filepath.Join(db, "x", c.name), filepath.Join(da, in))
		if got != c.shared {
			t.Errorf("%s shares %d bytes of its extents with layer a's file, want %d", c.name, got, c.shared)
		}
	}
	for name, data := range map[string][]byte{"big.bin": big, "grown.bin": grown, "same-prefix.bin": samePrefix, "other.txt": []byte("small and SHARED\n")} {
		if got, err := os.ReadFile(filepath.Join(db, "x", name)); err != nil || !bytes.Equal(got, data) {
			t.Errorf("x/%s does not hold what its tar entry says (err %v)", name, err)
		}
	}
	if res.SharedFiles != 3 || res.SharedBytes != 17+3<<20+8<<20+2<<20+1<<20 {
		t.Errorf("layer b shared %d files, %d bytes; want 3 files (small.txt, big.bin, sparse.img), 2 MiB of grown.bin and 1 MiB of same-prefix.bin",
			res.SharedFiles, res.SharedBytes)
	}
	// 1 MiB of grown.bin, 2 of same-prefix.bin, and metadata: far less than the 17 MiB layer b holds.
	if grew := testfs.Used(t, s.Dir()) - used; grew > 5<<20 {
		t.Errorf("layer b took %d bytes on disk, want less than 5 MiB", grew)
	}
}

func TestHardlinksNeedEqualMetadata(t *testing.T) {
	testenv.RequireRoot(t)
	s := openShareStore(t, t.TempDir(), layout.DedupHardlink)
	body := "one content, many files\n"
	other := shareTime.Add(time.Nanosecond)
	a, _ := publishLayer(t, s, "",
		testimage.File("f", 0o644, body),
		testimage.File("capfile", 0o755, body).Xattr("security.capability", testimage.CapNetBindService),
		testimage.File("group1", 0o755, "a hard-link group\n"),
		testimage.Hardlink("group2", "group1"),
	)
	b, res := publishLayer(t, s, "",
		testimage.File("same", 0o644, body),                 // equal in everything: linked
		testimage.File("mode", 0o640, body),                 // another mode
		at(testimage.File("mtime", 0o644, body), other),     // another mtime, by a nanosecond
		testimage.File("owner", 0o644, body).Owner(1000, 0), // another owner
		testimage.File("nocap", 0o755, body),                // capfile without its xattr
		testimage.File("xattr", 0o644, body).Xattr("user.k", []byte("v")),
		testimage.File("capfile", 0o755, body).Xattr("security.capability", testimage.CapNetBindService), // equal to a's
		testimage.File("g/one", 0o755, "a hard-link group\n"),
		testimage.Hardlink("g/two", "g/one"),
		testimage.Hardlink("three", "g/one"),
	)
	da, db := diffDir(t, s, a), diffDir(t, s, b)
	f := stat(t, filepath.Join(da, "f"))
	for _, name := range []string{"mode", "mtime", "owner", "nocap", "xattr"} {
		if got := stat(t, filepath.Join(db, name)); got.ino == f.ino || got.nlink != 1 {
			t.Errorf("%s, equal to f but for its metadata, is linked to it (inode %d, %d links)", name, got.ino, got.nlink)
		}
	}
	if got := stat(t, filepath.Join(db, "same")); got.ino != f.ino || got.nlink != 2 {
		t.Errorf("same: inode %d, %d links; want f's inode %d with 2 links", got.ino, got.nlink, f.ino)
	}
	if got, want := stat(t, filepath.Join(db, "capfile")), stat(t, filepath.Join(da, "capfile")); got.ino != want.ino || got.xattr != string(testimage.CapNetBindService) {
		t.Errorf("capfile: inode %d (capability %q), want a's inode %d with its capability", got.ino, got.xattr, want.ino)
	}
	// The group moves as a group: all five names are one inode.
	g := stat(t, filepath.Join(da, "group1"))
	for _, p := range []string{filepath.Join(da, "group2"), filepath.Join(db, "g/one"), filepath.Join(db, "g/two"), filepath.Join(db, "three")} {
		if got := stat(t, p); got.ino != g.ino || got.nlink != 5 {
			t.Errorf("%s: inode %d, %d links; want group1's inode %d with 5 links", p, got.ino, got.nlink, g.ino)
		}
	}
	if res.SharedFiles != 3 {
		t.Errorf("layer b shared %d files (inodes), want 3 (same, capfile, the group)", res.SharedFiles)
	}
}

// A hard-link entry gives the inode its header's mode, owner and times after the file was compared with
// its candidates: a candidate equal to the file as it was then is not one any more.
func TestHardlinkEntryChangesWhatMayLink(t *testing.T) {
	testenv.RequireRoot(t)
	s := openShareStore(t, t.TempDir(), layout.DedupHardlink)
	body := "compared before its hard link came\n"
	a, _ := publishLayer(t, s, "",
		testimage.File("exec", 0o755, body),
		testimage.File("plain", 0o644, body),
	)
	b, _ := publishLayer(t, s, "",
		testimage.File("f", 0o755, body), // equal to a's exec until the link entry makes it 0644
		testimage.Hardlink("g", "f"),     // header mode 0644
	)
	da, db := diffDir(t, s, a), diffDir(t, s, b)
	exec, plain, f := stat(t, filepath.Join(da, "exec")), stat(t, filepath.Join(da, "plain")), stat(t, filepath.Join(db, "f"))
	if f.mode != 0o644 {
		t.Fatalf("f has mode %o, want the link entry's 0644", f.mode)
	}
	if f.ino == exec.ino {
		t.Errorf("f (0644 once its link entry applied) is a hard link of a's exec (0755)")
	}
	if f.ino != plain.ino || f.nlink != 3 {
		t.Errorf("f: inode %d, %d links; want a's plain (inode %d) with 3 links (plain, f, g)", f.ino, f.nlink, plain.ino)
	}

	// The same when a later entry of the layer takes the link away: the inode keeps the link entry's mode.
	c, _ := publishLayer(t, s, "",
		testimage.File("f", 0o755, body),
		testimage.Hardlink("g", "f"),
		testimage.Whiteout("g"),
	)
	if f := stat(t, filepath.Join(diffDir(t, s, c), "f")); f.mode != 0o644 || f.ino == exec.ino {
		t.Errorf("f, whose link a whiteout took away: mode %o, inode %d; want 0644 and not a's exec (inode %d)", f.mode, f.ino, exec.ino)
	}
}

func TestHardlinkEMLINKStartsANewCopy(t *testing.T) {
	testenv.RequireRoot(t)
	mnt := testfs.Ext4(t, 128<<20) // at most 65000 links per inode
	s := openShareStore(t, mnt, layout.DedupHardlink)
	extra := filepath.Join(mnt, "links") // other names of the store's files: same filesystem, outside the store
	if err := os.Mkdir(extra, 0o755); err != nil {
		t.Fatal(err)
	}
	linkUpTo := func(p string, nlink uint64) {
		t.Helper()
		for i := nlinks(t, p); i < nlink; i++ {
			if err := os.Link(p, filepath.Join(extra, fmt.Sprintf("%d-%d", ino(t, p), i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	popular := func(name string) testimage.Entry { return testimage.File(name, 0o644, "popular\n") }

	a, _ := publishLayer(t, s, "", popular("f"))
	fa := filepath.Join(diffDir(t, s, a), "f")
	linkUpTo(fa, 64999) // room for one more link

	// A group of two names cannot join (all or none), and keeps its own inode: a new copy.
	b, res := publishLayer(t, s, "", popular("g1"), testimage.Hardlink("g2", "g1"))
	g1, g2 := filepath.Join(diffDir(t, s, b), "g1"), filepath.Join(diffDir(t, s, b), "g2")
	if ino(t, g1) == ino(t, fa) || ino(t, g1) != ino(t, g2) || nlinks(t, g1) != 2 || nlinks(t, fa) != 64999 || res.SharedFiles != 0 {
		t.Errorf("a group of two onto an inode with room for one: g1 inode %d (%d links), g2 %d, a's f %d (%d links), shared %d; "+
			"want the group on an inode of its own", ino(t, g1), nlinks(t, g1), ino(t, g2), ino(t, fa), nlinks(t, fa), res.SharedFiles)
	}
	linkUpTo(g1, 65000) // b's copy is full now

	// The newest candidate (b's) is full: the next one (a's) takes the file.
	c, _ := publishLayer(t, s, "", popular("c"))
	if fc := filepath.Join(diffDir(t, s, c), "c"); ino(t, fc) != ino(t, fa) || nlinks(t, fa) != 65000 {
		t.Errorf("c: inode %d, want a's %d (b's is full); a's f has %d links", ino(t, fc), ino(t, fa), nlinks(t, fa))
	}
	// Every copy is full: a new one.
	d, res := publishLayer(t, s, "", popular("d"))
	fd := filepath.Join(diffDir(t, s, d), "d")
	if ino(t, fd) == ino(t, fa) || ino(t, fd) == ino(t, g1) || nlinks(t, fd) != 1 || res.SharedFiles != 0 {
		t.Errorf("d: inode %d with %d links, shared %d; want a new copy", ino(t, fd), nlinks(t, fd), res.SharedFiles)
	}
	for _, p := range []string{g1, fd} {
		if data, err := os.ReadFile(p); err != nil || string(data) != "popular\n" {
			t.Errorf("%s: %q, %v", p, data, err)
		}
	}
}

func ino(t *testing.T, p string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func nlinks(t *testing.T, p string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return uint64(st.Nlink)
}

// No container sees two names of one inode that its image did not make hard links: a file is not
// linked to an inode that a layer below it, or another file of its own layer, already uses.
func TestHardlinksNeverJoinAnInodeOfTheSameImage(t *testing.T) {
	testenv.RequireRoot(t)
	s := openShareStore(t, t.TempDir(), layout.DedupHardlink)
	f := func(name string) testimage.Entry { return testimage.File(name, 0o644, "in many layers\n") }
	a, _ := publishLayer(t, s, "", f("f"))
	sib, _ := publishLayer(t, s, "", f("s/f")) // a sibling of a: linked to a's file
	child, _ := publishLayer(t, s, sib, f("c/f"), f("c/g"))
	d, _ := publishLayer(t, s, "", f("d/1"), f("d/2"))
	ia := ino(t, filepath.Join(diffDir(t, s, a), "f"))
	if got := ino(t, filepath.Join(diffDir(t, s, sib), "s/f")); got != ia {
		t.Errorf("s/f, in a sibling layer of f's, has inode %d, want f's %d", got, ia)
	}
	// The child's container sees s/f (inode ia): its files may not join ia, nor one another.
	cf, cg := ino(t, filepath.Join(diffDir(t, s, child), "c/f")), ino(t, filepath.Join(diffDir(t, s, child), "c/g"))
	if cf == ia || cg == ia || cf == cg {
		t.Errorf("the child layer's c/f and c/g have inodes %d and %d; want two of their own, not %d (s/f, below them)", cf, cg, ia)
	}
	d1, d2 := ino(t, filepath.Join(diffDir(t, s, d), "d/1")), ino(t, filepath.Join(diffDir(t, s, d), "d/2"))
	if d1 == d2 || (d1 != ia && d1 != cf && d1 != cg) {
		t.Errorf("d/1 and d/2 have inodes %d and %d: want each linked to another layer's file, never to each other", d1, d2)
	}
}

// A file the index names no longer holds what it did (changed behind the store's back): nothing is
// shared with it, and the new layer gets its tar's bytes.
func TestIndexThatLies(t *testing.T) {
	testenv.RequireRoot(t)
	for _, dedup := range []layout.Dedup{layout.DedupAuto, layout.DedupHardlink} {
		t.Run(string(dedup), func(t *testing.T) {
			s := openShareStore(t, testfs.XFS(t, 0), dedup)
			big := random(4, 2<<20)
			a, _ := publishLayer(t, s, "",
				testimage.File("changed", 0o644, "what the index says\n"),
				testimage.File("symlinked", 0o644, "what the index says too\n"),
				testimage.BinaryFile("tail", 0o644, big),
			)
			da := diffDir(t, s, a)
			// Same size, other bytes; a symlink where the file was; other bytes past the first MiB.
			if err := os.WriteFile(filepath.Join(da, "changed"), []byte("what the index SAYS\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(da, "symlinked")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("/etc/hostname", filepath.Join(da, "symlinked")); err != nil {
				t.Fatal(err)
			}
			lied := append(append([]byte{}, big[:(2<<20)-1]...), big[(2<<20)-1]^1)
			if err := os.WriteFile(filepath.Join(da, "tail"), lied, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(filepath.Join(da, "tail"), shareTime, shareTime); err != nil {
				t.Fatal(err)
			}
			b, res := publishLayer(t, s, "",
				testimage.File("x/changed", 0o644, "what the index says\n"),
				testimage.File("x/symlinked", 0o644, "what the index says too\n"),
				testimage.BinaryFile("x/tail", 0o644, big),
			)
			db := diffDir(t, s, b)
			for name, want := range map[string][]byte{"changed": []byte("what the index says\n"), "symlinked": []byte("what the index says too\n"), "tail": big} {
				got, err := os.ReadFile(filepath.Join(db, "x", name))
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("x/%s does not hold its tar's bytes (err %v)", name, err)
				}
			}
			if res.SharedFiles != 0 {
				t.Errorf("shared %d files with files that are not what the index says", res.SharedFiles)
			}
		})
	}
}

// A crash after files were shared but before the layer was recorded: the next open removes the
// staged layer, the files it shared data with are unchanged, and nothing of it is in the index.
func TestCrashBetweenShareAndRecord(t *testing.T) {
	testenv.RequireRoot(t)
	for _, dedup := range []layout.Dedup{layout.DedupAuto, layout.DedupHardlink} {
		t.Run(string(dedup), func(t *testing.T) {
			dir := testfs.XFS(t, 0)
			s := openShareStore(t, dir, dedup)
			big := random(5, 3<<20)
			a, resA := publishLayer(t, s, "", testimage.File("f", 0o644, "shared\n"), testimage.BinaryFile("big", 0o644, big))
			keepImage(t, s, resA, "localhost/a:1")
			da := diffDir(t, s, a)
			before, err := testimage.TreeState(da)
			if err != nil {
				t.Fatal(err)
			}
			fBefore := stat(t, filepath.Join(da, "f"))
			_, res, err := stageLayer(s, "", []testimage.Entry{testimage.File("f", 0o644, "shared\n"), testimage.BinaryFile("big", 0o644, big)})
			if err != nil || res.SharedFiles != 2 {
				t.Fatalf("staging b: shared %d files, %v", res.SharedFiles, err)
			}
			if err := s.Close(); err != nil { // the crash: b neither committed nor discarded
				t.Fatal(err)
			}
			s = openShareStore(t, dir, dedup)
			if len(s.Cleaned()) == 0 {
				t.Error("the next open removed nothing")
			}
			after, err := testimage.TreeState(da)
			if err != nil {
				t.Fatal(err)
			}
			if d := testimage.DiffTrees(before, after); len(d) > 0 {
				t.Errorf("layer a changed: %v", d)
			}
			if got := stat(t, filepath.Join(da, "f")); got.nlink != fBefore.nlink {
				t.Errorf("a's f has %d links after the crash, %d before", got.nlink, fBefore.nlink)
			}
			// The index holds only a: a new layer shares with a's files.
			c, res := publishLayer(t, s, "", testimage.File("c/f", 0o644, "shared\n"))
			if res.SharedFiles != 1 {
				t.Errorf("after the crash, a new layer shared %d files, want 1 (with a's)", res.SharedFiles)
			}
			if dedup == layout.DedupHardlink && stat(t, filepath.Join(diffDir(t, s, c), "c/f")).ino != fBefore.ino {
				t.Error("c/f is not a link of a's f")
			}
			report, err := layout.Check(t.Context(), s.Dir(), layout.CheckOptions{Deep: true})
			if err != nil || !report.OK() {
				t.Errorf("check --deep: %+v, %v", report, err)
			}
		})
	}
}

// The layers of an image are unpacked at the same time: a file may be linked while it is unpacked to
// the inode of a file of a layer below that is not committed yet. When the layer is committed (the
// layers below are by then), it gets a copy of its own again.
func TestHardlinkToALayerBelowUnpackedMeanwhile(t *testing.T) {
	testenv.RequireRoot(t)
	s := openShareStore(t, t.TempDir(), layout.DedupHardlink)
	f := func(name string) testimage.Entry { return testimage.File(name, 0o644, "below and above\n") }
	big := random(6, 3<<20)
	below, resBelow := stageUnpacked(t, s, "", f("f"), testimage.BinaryFile("big", 0o644, big))
	belowID := layout.ChainID("", resBelow.DiffID)
	above, resAbove := stageUnpacked(t, s, belowID, f("g"), testimage.BinaryFile("big2", 0o644, big))
	if resAbove.SharedFiles != 2 {
		t.Fatalf("unpacking the layer above shared %d files, want 2 (linked to the staged layer below)", resAbove.SharedFiles)
	}
	commitStaged(t, s, below, "", resBelow)
	if err := unpack.LinkEqualFiles(above.DiffDir(), &resAbove, above.Files()); err != nil {
		t.Fatal(err)
	}
	aboveID := commitStaged(t, s, above, belowID, resAbove)
	db, da := diffDir(t, s, belowID), diffDir(t, s, aboveID)
	for _, p := range [][2]string{{"f", "g"}, {"big", "big2"}} {
		b, a := stat(t, filepath.Join(db, p[0])), stat(t, filepath.Join(da, p[1]))
		if a.ino == b.ino || a.nlink != 1 || b.nlink != 1 || a.sum != b.sum || a.mtime != b.mtime || a.mode != b.mode {
			t.Errorf("%s above (inode %d, %d links) and %s below (inode %d, %d links): want two inodes with equal bytes and metadata",
				p[1], a.ino, a.nlink, p[0], b.ino, b.nlink)
		}
	}
	if resAbove.SharedFiles != 0 {
		t.Errorf("the layer above shares %d files once committed, want 0", resAbove.SharedFiles)
	}
}

// stageUnpacked stages and unpacks a layer on parent, without the pass at commit.
func stageUnpacked(t *testing.T, s *layout.Store, parent string, entries ...testimage.Entry) (*layout.StagedLayer, unpack.Result) {
	t.Helper()
	var buf bytes.Buffer
	for i := range entries {
		entries[i].Header.Format = tar.FormatPAX
		entries[i].Header.ModTime = shareTime
	}
	if err := testimage.WriteTar(&buf, entries); err != nil {
		t.Fatal(err)
	}
	l, err := s.StageLayer(parent)
	if err != nil {
		t.Fatal(err)
	}
	res, err := unpack.Layer(context.Background(), &buf, l.DiffDir(), l.TarSplit(), unpack.Options{Files: l.Files()})
	if err != nil {
		t.Fatal(err)
	}
	return l, res
}

func commitStaged(t *testing.T, s *layout.Store, l *layout.StagedLayer, parent string, res unpack.Result) string {
	t.Helper()
	id := layout.ChainID(parent, res.DiffID)
	if err := s.CommitLayer(l, layout.LayerMeta{ID: id, Parent: parent, DiffID: res.DiffID, DiffSize: res.DiffSize,
		UIDs: res.UIDs, GIDs: res.GIDs}); err != nil {
		t.Fatal(err)
	}
	return id
}

// Many small files at once (they are compared with their candidates on goroutines of their own, in
// buffers reused from file to file): each shares data with its candidate exactly when their bytes are
// equal, and holds its own tar entry's bytes, whatever file a buffer held before. The index lies about
// every other candidate (its bytes were changed after it was indexed, the last byte only).
func TestReflinkSmallFilesShareEqualBytesOnly(t *testing.T) {
	testenv.RequireRoot(t)
	s := openShareStore(t, testfs.XFS(t, 0), layout.DedupAuto)
	sizes := []int{1, 4095, 4096, 4097, 6000, 8192, 65536, 100000, 1 << 20}
	var entries, again []testimage.Entry
	data := map[string][]byte{}
	for i := 0; i < 60; i++ {
		name := fmt.Sprintf("f%02d", i)
		data[name] = random(uint64(100+i), sizes[i%len(sizes)])
		entries = append(entries, testimage.BinaryFile(name, 0o644, data[name]))
		again = append(again, testimage.BinaryFile("x/"+name, 0o644, data[name]))
	}
	a, _ := publishLayer(t, s, "", entries...)
	da := diffDir(t, s, a)
	for i := 1; i < 60; i += 2 {
		name := fmt.Sprintf("f%02d", i)
		lied := append([]byte{}, data[name]...)
		lied[len(lied)-1] ^= 1
		if err := os.WriteFile(filepath.Join(da, name), lied, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, res := publishLayer(t, s, "", again...)
	db := diffDir(t, s, b)
	for i := 0; i < 60; i++ {
		name := fmt.Sprintf("f%02d", i)
		got, err := os.ReadFile(filepath.Join(db, "x", name))
		if err != nil || !bytes.Equal(got, data[name]) {
			t.Errorf("x/%s (%d bytes) does not hold its tar entry's bytes (err %v)", name, len(data[name]), err)
		}
		shared := testfs.SharedBytes(t, filepath.Join(db, "x", name), filepath.Join(da, name))
		if equal := i%2 == 0; equal != (shared > 0) {
			t.Errorf("x/%s shares %d bytes with layer a's %s; its bytes equal them: %v", name, shared, name, equal)
		}
	}
	if res.SharedFiles != 30 {
		t.Errorf("layer b shared %d files, want the 30 whose candidates hold equal bytes", res.SharedFiles)
	}
}
