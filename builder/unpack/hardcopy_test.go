package unpack

import (
	"archive/tar"
	"bytes"
	"os"
	"slices"
	"testing"

	"github.com/cargohold/cargohold/internal/testenv"
	"github.com/cargohold/cargohold/internal/testimage"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// With CopyHardlinksAcrossDirs, a hard link into another directory becomes a copy that reads like
// the shared inode would (content, holes, owner, mode incl. setuid, xattrs incl. a capability,
// times), links within one directory stay links, and the layer still reassembles byte for byte.
func TestHardlinksAcrossDirsBecomeCopies(t *testing.T) {
	testenv.RequireRoot(t)
	file := testimage.File("a/file", 0o4755, "one inode, many names").Owner(1000, 1001)
	file.Header.PAXRecords = map[string]string{
		"SCHILY.xattr.security.capability": string(capNetBindService()),
		"SCHILY.xattr.user.note":           "kept",
	}
	link := func(name, target string) testimage.Entry { // as tar writers record a link: the target's metadata
		h := file.Header
		h.Typeflag, h.Name, h.Linkname, h.Size = tar.TypeLink, name, target, 0
		return testimage.Entry{Header: h}
	}
	big := make([]byte, 8<<20)
	copy(big[4<<20:], "middle")
	fifo := testimage.Entry{Header: tar.Header{Typeflag: tar.TypeFifo, Name: "a/fifo", Mode: 0o640}}
	tty := testimage.Entry{Header: tar.Header{Typeflag: tar.TypeChar, Name: "a/tty", Mode: 0o620, Devmajor: 5, Gid: 5}}
	stream := makeTar(t,
		testimage.Dir("a", 0o755), file,
		link("a/same-dir", "a/file"),
		link("b/other-dir", "a/file"),
		link("b/second", "a/file"),                                           // links to b/other-dir, the copy already in b/
		testimage.Symlink("via", "a"), link("via/through-symlink", "a/file"), // resolves to a/: the same directory
		testimage.File("top", 0o600, "at the root"), hardlinkAs("c/from-root", "top", 0o600),
		testimage.Symlink("a/sym", "file"), hardlinkAs("c/sym", "a/sym", 0o777),
		fifo, hardlinkAs("c/fifo", "a/fifo", 0o640),
		tty, hardlinkAs("c/tty", "a/tty", 0o620),
		testimage.Entry{Header: tar.Header{Typeflag: tar.TypeReg, Name: "a/big", Mode: 0o644}, Data: big},
		hardlinkAs("c/big", "a/big", 0o644),
	)

	e := newEnv(t)
	res, ts, err := e.unpack(t, stream, Options{CopyHardlinksAcrossDirs: true})
	if err != nil {
		t.Fatal(err)
	}

	checkLinksInOneDir(t, e)
	checkCopiesOfFile(t, e)
	checkCopiesOfOthers(t, e, big)
	checkRecordedAsLinks(t, e.root, stream, res, ts)
	e.checkOutside(t)
}

// checkLinksInOneDir: links within one directory (also through a symlink to it) stay links.
func checkLinksInOneDir(t *testing.T, e *env) {
	t.Helper()
	orig := lstat(t, e.path("a/file"))
	if got := lstat(t, e.path("a/same-dir")); got.Ino != orig.Ino {
		t.Error("a/same-dir: a link within one directory must stay a link")
	}
	if got := lstat(t, e.path("a/through-symlink")); got.Ino != orig.Ino {
		t.Error("a/through-symlink: the link's directory is a/ (through the symlink via), so it must stay a link")
	}
	if orig.Nlink != 3 {
		t.Errorf("a/file has %d links, want 3 (itself, same-dir, through-symlink)", orig.Nlink)
	}
}

// checkCopiesOfFile: a link into b/ is a copy that reads as the shared inode; a second link from
// b/ links to that copy.
func checkCopiesOfFile(t *testing.T, e *env) {
	t.Helper()
	orig := lstat(t, e.path("a/file"))
	for _, p := range []string{"a/file", "b/other-dir"} {
		st := checkMode(t, e.path(p), unix.S_IFREG, 0o4755)
		checkOwner(t, e.path(p), 1000, 1001)
		checkContent(t, e.path(p), "one inode, many names")
		checkMtime(t, e.path(p), testTime)
		if !bytes.Equal(getxattr(t, e.path(p), "security.capability"), capNetBindService()) {
			t.Errorf("%s: capability lost", p)
		}
		if got := string(getxattr(t, e.path(p), "user.note")); got != "kept" {
			t.Errorf("%s: user.note = %q", p, got)
		}
		if p == "b/other-dir" && st.Ino == orig.Ino {
			t.Errorf("b/other-dir: want a copy with its own inode, got the original's")
		}
	}
	if copy := lstat(t, e.path("b/other-dir")); lstat(t, e.path("b/second")).Ino != copy.Ino || copy.Nlink != 2 {
		t.Error("b/second: want a link to b/other-dir, the copy made in b/ before")
	}
}

// checkCopiesOfOthers: links into c/ to a file at the root, a symlink, a FIFO, a device and a
// file with holes are copies of them.
func checkCopiesOfOthers(t *testing.T, e *env, big []byte) {
	t.Helper()
	if st := lstat(t, e.path("c/from-root")); st.Ino == lstat(t, e.path("top")).Ino {
		t.Error("c/from-root: a link from the root into c/ must be a copy")
	}
	checkContent(t, e.path("c/from-root"), "at the root")
	checkMode(t, e.path("c/from-root"), unix.S_IFREG, 0o600)
	if target, err := os.Readlink(e.path("c/sym")); err != nil || target != "file" {
		t.Errorf("c/sym: want a copied symlink to file, got %q, %v", target, err)
	}
	checkMode(t, e.path("c/fifo"), unix.S_IFIFO, 0o640)
	if st := checkMode(t, e.path("c/tty"), unix.S_IFCHR, 0o620); st.Rdev != unix.Mkdev(5, 0) || st.Gid != 5 {
		t.Errorf("c/tty: device %x group %d, want 5:0 group 5", st.Rdev, st.Gid)
	}
	if got, err := os.ReadFile(e.path("c/big")); err != nil || !bytes.Equal(got, big) {
		t.Errorf("c/big: content differs (%v)", err)
	}
	if st := lstat(t, e.path("c/big")); st.Blocks*512 > 1<<20 {
		t.Errorf("c/big: %d bytes allocated for %d, want the zero runs as holes", st.Blocks*512, st.Size)
	}
}

// checkRecordedAsLinks: Podman rebuilds the layer from root (the diff/ with the copies) and
// tar-split, where the links are still links: the same bytes, diff ID and owners as an unpack
// without the option.
func checkRecordedAsLinks(t *testing.T, root string, stream []byte, res Result, ts []byte) {
	t.Helper()
	if got := reassemble(t, root, ts); !bytes.Equal(got, stream) {
		t.Fatal("reassembled stream differs from the layer")
	}
	if res.DiffID != digest.FromBytes(stream) {
		t.Error("DiffID differs")
	}
	plain := newEnv(t)
	plainRes, plainTS := plain.mustUnpack(t, stream)
	if !bytes.Equal(plainTS, ts) || plainRes.DiffID != res.DiffID || !slices.Equal(plainRes.UIDs, res.UIDs) {
		t.Error("tar-split, diff ID or owners differ from an unpack without the option")
	}
	if lstat(t, plain.path("b/other-dir")).Ino != lstat(t, plain.path("a/file")).Ino {
		t.Error("without the option, links across directories must stay links")
	}
}

// A copy replaces what an earlier entry left at its name (here a directory made implicitly for
// b/copy/inner), as a link does. After anything is removed (here b/gone, a link to the copy
// b/copy, by a whiteout), the extractor no longer trusts its record of copies: the next link
// gets a fresh copy rather than a link to a name that may now hold something else.
func TestCopiedHardlinkReplacesEarlierEntry(t *testing.T) {
	testenv.RequireRoot(t)
	e := newEnv(t)
	stream := makeTar(t, testimage.File("a/file", 0o644, "the target"), testimage.File("b/copy/inner", 0o644, "gone"), testimage.Hardlink("b/copy", "a/file"),
		testimage.Hardlink("b/gone", "a/file"), testimage.File("b/.wh.gone", 0o644, ""), testimage.Hardlink("b/later", "a/file"))
	if _, _, err := e.unpack(t, stream, Options{CopyHardlinksAcrossDirs: true}); err != nil {
		t.Fatal(err)
	}
	checkMode(t, e.path("b/copy"), unix.S_IFREG, 0o644)
	checkContent(t, e.path("b/copy"), "the target")
	checkContent(t, e.path("b/later"), "the target")
	checkMode(t, e.path("b/gone"), unix.S_IFCHR, 0) // the whiteout
	if copy := lstat(t, e.path("b/copy")); copy.Nlink != 1 || lstat(t, e.path("b/later")).Ino == copy.Ino {
		t.Errorf("b/copy has %d links and b/later shares its inode: want b/gone's link gone and b/later a fresh copy", copy.Nlink)
	}
}

func hardlinkAs(name, target string, mode int64) testimage.Entry {
	e := testimage.Hardlink(name, target)
	e.Header.Mode = mode
	if target == "a/tty" {
		e.Header.Gid = 5
	}
	return e
}
