package builder

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cargohold/cargohold/internal/testenv"
	"github.com/cargohold/cargohold/internal/testfs"
	"github.com/cargohold/cargohold/internal/testimage"
	"github.com/cargohold/cargohold/layout"
	"golang.org/x/sys/unix"
)

// A nightly series (testimage.Nightly) published with shared file data reads exactly as it does
// without: every layer's tree is the same (for hard links, but for link counts), the storage library
// regenerates every diff ID, and removing the first night leaves the others' files as they were.
func TestDedupNightlySeries(t *testing.T) {
	testenv.RequireRoot(t)
	layouts := t.TempDir()
	for n := 1; n <= 4; n++ {
		if _, err := testimage.WriteLayout(filepath.Join(layouts, "nightly"), fmt.Sprint(n), testimage.Nightly(fakeBusybox, n, testimage.Gzip)); err != nil {
			t.Fatal(err)
		}
	}
	ref := func(n int) string { return fmt.Sprintf("oci:%s:%d", filepath.Join(layouts, "nightly"), n) }
	for _, c := range []struct {
		driver  layout.Driver
		dedup   layout.Dedup
		fs      string
		sharing layout.Sharing
		nlinks  bool // link counts as without sharing
	}{
		{layout.Overlay, layout.DedupAuto, "xfs", layout.ShareReflink, true},
		{layout.Overlay, layout.DedupHardlink, "ext4", layout.ShareHardlink, false},
		{layout.VFS, layout.DedupAuto, "xfs", layout.ShareReflink, true},
		{layout.VFS, layout.DedupHardlink, "ext4", layout.ShareHardlink, false},
		{layout.Overlay, layout.DedupAuto, "ext4", layout.ShareNone, true}, // auto without reflinks: off
	} {
		t.Run(fmt.Sprintf("%s-%s-%s", c.driver, c.dedup, c.fs), func(t *testing.T) {
			mnt := testfs.Ext4(t, 256<<20)
			if c.fs == "xfs" {
				mnt = testfs.XFS(t, 0)
			}
			policy := acceptAnythingPolicy(t)
			plainDir, dir := filepath.Join(mnt, "plain"), filepath.Join(mnt, "shared")
			plain := &Publisher{Store: openStoreAt(t, plainDir, layout.Options{Driver: c.driver, Dedup: layout.DedupOff}), Options: Options{PolicyPath: policy}}
			store := openStoreAt(t, dir, layout.Options{Driver: c.driver, Dedup: c.dedup})
			if sh, err := store.Sharing(); err != nil || sh != c.sharing {
				t.Fatalf("sharing: %v, %v; want %v", sh, err, c.sharing)
			}
			p := &Publisher{Store: store, Options: Options{PolicyPath: policy}}
			var ids []string
			for n := 1; n <= 3; n++ {
				name := fmt.Sprintf("localhost/nightly:%d", n)
				mustPublish(t, plain, ref(n), name)
				res := mustPublish(t, p, ref(n), name)
				ids = append(ids, res.ImageID)
				if n > 1 && c.sharing != layout.ShareNone && res.FilesShared < testimage.NightlyModules {
					t.Errorf("night %d shared %d files, want at least the %d modules", n, res.FilesShared, testimage.NightlyModules)
				}
				if c.sharing == layout.ShareNone && res.FilesShared != 0 {
					t.Errorf("night %d shared %d files in a store that shares none", n, res.FilesShared)
				}
			}
			for _, id := range ids {
				want, got := layerDirs(t, plainDir, id), layerDirs(t, dir, id)
				for i := range want {
					if d := diffLines(treeLines(t, want[i], c.nlinks), treeLines(t, got[i], c.nlinks)); d != "" {
						t.Errorf("image %s layer %d differs from the store without sharing (- without, + with):\n%s", id[:12], i, d)
					}
				}
			}
			if c.sharing == layout.ShareHardlink {
				checkLinkedAcrossNights(t, layerDirs(t, dir, ids[0])[1], layerDirs(t, dir, ids[1])[1])
			}
			if err := testimage.VerifyStore(dir, string(c.driver)); err != nil {
				t.Fatalf("the storage library does not accept the store: %v", err)
			}

			// Night 1 goes: the other nights' files stay as they were.
			before := map[string][]string{}
			for _, id := range ids[1:] {
				for _, d := range layerDirs(t, dir, id) {
					before[d] = treeLines(t, d, false)
				}
			}
			if _, err := store.Remove(t.Context(), "localhost/nightly:1", layout.RemoveOptions{Now: true}); err != nil {
				t.Fatal(err)
			}
			gc, err := store.GC(t.Context(), 0, time.Now(), false)
			if err != nil || len(gc.Deleted) != 2 {
				t.Fatalf("gc of night 1: deleted %v, %v; want its 2 own layers", gc.Deleted, err)
			}
			for d, lines := range before {
				if diff := diffLines(lines, treeLines(t, d, false)); diff != "" {
					t.Errorf("gc of night 1 changed %s (- before, + after):\n%s", d, diff)
				}
			}
			// The index forgot night 1 and still knows the others: night 4 shares with them.
			res := mustPublish(t, p, ref(4), "localhost/nightly:4")
			if c.sharing != layout.ShareNone && res.FilesShared < testimage.NightlyModules {
				t.Errorf("night 4, after gc: shared %d files, want at least %d", res.FilesShared, testimage.NightlyModules)
			}
			report, err := layout.Check(t.Context(), dir, layout.CheckOptions{Deep: true})
			if err != nil || !report.OK() || len(report.Leftovers) > 0 {
				t.Errorf("check --deep after gc and night 4: %+v, %v", report, err)
			}
		})
	}
}

// checkLinkedAcrossNights: the runtime layers of two nights share the inodes of their files that are
// equal in content and metadata, and only those.
func checkLinkedAcrossNights(t *testing.T, night1, night2 string) {
	t.Helper()
	same := func(name string) bool {
		var a, b unix.Stat_t
		if err := unix.Lstat(filepath.Join(night1, name), &a); err != nil {
			t.Fatal(err)
		}
		if err := unix.Lstat(filepath.Join(night2, name), &b); err != nil {
			t.Fatal(err)
		}
		return a.Ino == b.Ino
	}
	for _, name := range []string{"opt/rt/lib/mod07.py", "opt/rt/lib/libbig.so", "opt/rt/bin/captool", "opt/rt/share/owned.txt", "opt/rt/lib/sparse.img"} {
		if !same(name) {
			t.Errorf("%s, equal in both nights, is not one inode", name)
		}
	}
	for _, name := range []string{"opt/rt/lib/mod07.pyc", "opt/rt/lib/grow.dat", "opt/rt/VERSION"} {
		if same(name) {
			t.Errorf("%s, whose content or mtime differs between the nights, is one inode", name)
		}
	}
	if !same("opt/rt/lib/libbig.so.1") {
		t.Error("the hard-link group libbig.so/libbig.so.1 did not move as a group")
	}
}

// treeLines describes every path under root as a container would see it: type and mode, owner, size,
// mtime, (link count), device, symlink target, content and xattrs.
func treeLines(t *testing.T, root string, nlinks bool) []string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%q %o %d:%d", rel, st.Mode, st.Uid, st.Gid)
		if rel != "." { // the root's mtime is the time of publishing
			line += fmt.Sprintf(" %d.%09d", st.Mtim.Sec, st.Mtim.Nsec)
		}
		if nlinks && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			line += fmt.Sprintf(" nlink=%d", st.Nlink)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %d %x", st.Size, sha256.Sum256(data))
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line += " -> " + target
		case unix.S_IFCHR, unix.S_IFBLK:
			line += fmt.Sprintf(" dev=%d", st.Rdev)
		}
		lines = append(lines, line+" "+xattrList(t, p))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

func xattrList(t *testing.T, p string) string {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		t.Fatalf("listing xattrs of %s: %v", p, err)
	}
	var attrs []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" {
			continue
		}
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			t.Fatalf("reading xattr %s of %s: %v", name, p, err)
		}
		attrs = append(attrs, fmt.Sprintf("%s=%x", name, v[:m]))
	}
	slices.Sort(attrs)
	return strings.Join(attrs, ",")
}

// diffLines lists the lines only a has ("-") and only b has ("+"), "" if none.
func diffLines(a, b []string) string {
	var d []string
	for _, l := range a {
		if !slices.Contains(b, l) {
			d = append(d, "- "+l)
		}
	}
	for _, l := range b {
		if !slices.Contains(a, l) {
			d = append(d, "+ "+l)
		}
	}
	return strings.Join(d, "\n")
}
