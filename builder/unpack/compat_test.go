package unpack

import (
	"archive/tar"
	"bytes"
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
	"github.com/cargohold/cargohold/internal/testimage"
	"go.podman.io/storage/pkg/archive"
	"golang.org/x/sys/unix"
)

// TestMatchesContainersStorage unpacks one layer with Layer and with containers/storage's own
// applier (what "podman pull" does for the overlay driver) and compares the two trees.
func TestMatchesContainersStorage(t *testing.T) {
	testenv.RequireRoot(t)
	ping := testimage.File("usr/bin/ping", 0o4755, "ping").Owner(1000, 1000)
	ping.Header.PAXRecords = map[string]string{
		"SCHILY.xattr.security.capability": string(capNetBindService()),
		"SCHILY.xattr.user.origin":         "test",
	}
	older := time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC)
	oldFile := testimage.File("usr/share/old", 0o444, "old")
	oldFile.Header.ModTime = older
	shared := testimage.Dir("srv/", 0o2775)
	shared.Header.Gid = 50
	stream := makeTar(t,
		testimage.Dir("./", 0o755),
		testimage.Dir("usr/", 0o755), testimage.Dir("usr/bin/", 0o755), testimage.Dir("usr/share/", 0o755),
		ping, oldFile,
		testimage.Hardlink("usr/bin/ping6", "usr/bin/ping"),
		testimage.Symlink("usr/bin/sh", "dash"),
		testimage.Symlink("lib", "usr/lib"),
		testimage.Dir("tmp/", 0o1777),
		shared, testimage.File("srv/f", 0o664, "f"),
		testimage.Dir("etc/", 0o755), testimage.File("etc/.wh.motd", 0o644, ""),
		testimage.Dir("var/", 0o755), testimage.Dir("var/cache/", 0o755), testimage.File("var/cache/.wh..wh..opq", 0o644, ""),
		testimage.Dir("dev/", 0o755),
		testimage.Entry{Header: tar.Header{Typeflag: tar.TypeChar, Name: "dev/console", Mode: 0o600, Devmajor: 5, Devminor: 1}},
		testimage.Entry{Header: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/sda", Mode: 0o660, Gid: 6, Devmajor: 8, Devminor: 0}},
		testimage.Entry{Header: tar.Header{Typeflag: tar.TypeFifo, Name: "dev/fifo", Mode: 0o644}},
		testimage.Entry{Header: tar.Header{Typeflag: tar.TypeReg, Name: "var/lib.img", Mode: 0o600}, Data: append(make([]byte, 1<<20), 'x')},
	)

	ours := newEnv(t)
	ours.mustUnpack(t, stream)

	theirs := t.TempDir()
	if err := archive.UntarUncompressed(bytes.NewReader(stream), theirs, &archive.TarOptions{WhiteoutFormat: archive.OverlayWhiteoutFormat}); err != nil {
		t.Fatalf("containers/storage: %v", err)
	}

	got, want := snapshot(t, ours.root), snapshot(t, theirs)
	for _, p := range slices.Sorted(keys(got, want)) {
		if got[p] != want[p] {
			t.Errorf("%s:\n  ours:               %s\n  containers/storage: %s", p, got[p], want[p])
		}
	}
}

// compareWithStorage unpacks stream with Layer (apply: vfs mode) and with the storage library's own
// code for the same driver (overlay: archive.Unpack, as the overlay driver's ApplyDiff; vfs:
// archive.UnpackLayer, as the vfs driver's), each into a fresh 0555 root as the drivers create it,
// reports every difference and returns our env for further checks. Their code runs under the
// umask 022 that Podman normally has; it creates implicit directories subject to it.
func compareWithStorage(t *testing.T, stream []byte, apply bool) *env {
	t.Helper()
	ours := newEnv(t)
	theirs := filepath.Join(t.TempDir(), "root")
	for _, root := range []string{ours.root, theirs} {
		if err := os.MkdirAll(root, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(root, 0o555); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := ours.unpack(t, stream, Options{Apply: apply}); err != nil {
		t.Fatalf("Layer: %v", err)
	}
	old := unix.Umask(0o022)
	var err error
	if apply {
		_, err = archive.ApplyUncompressedLayer(theirs, bytes.NewReader(stream), &archive.TarOptions{})
	} else {
		err = archive.UntarUncompressed(bytes.NewReader(stream), theirs, &archive.TarOptions{WhiteoutFormat: archive.OverlayWhiteoutFormat})
	}
	unix.Umask(old)
	if err != nil {
		t.Fatalf("containers/storage: %v", err)
	}
	got, want := snapshot(t, ours.root), snapshot(t, theirs)
	for _, p := range slices.Sorted(keys(got, want)) {
		if got[p] != want[p] {
			t.Errorf("%s:\n  ours:               %s\n  containers/storage: %s", p, got[p], want[p])
		}
	}
	return ours
}

// A hard link entry whose owner is already the file's must not chown the shared inode: the kernel
// drops security.capability on chown. GNU tar --xattrs writes exactly this.
func TestHardlinkKeepsCapability(t *testing.T) {
	testenv.RequireRoot(t)
	ping := testimage.File("usr/bin/ping", 0o755, "ping").Owner(0, 0)
	ping.Header.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": string(capNetBindService())}
	owned := testimage.File("usr/bin/arping", 0o755, "arping").Owner(1000, 1000)
	owned.Header.PAXRecords = ping.Header.PAXRecords
	link, ownedLink := testimage.Hardlink("usr/bin/ping4", "usr/bin/ping"), testimage.Hardlink("usr/sbin/arping", "usr/bin/arping")
	link.Header.Mode, ownedLink.Header.Mode = 0o755, 0o755
	ownedLink.Header.Uid, ownedLink.Header.Gid = 1000, 1000
	stream := makeTar(t, testimage.Dir("usr/", 0o755), testimage.Dir("usr/bin/", 0o755), ping, link, owned, testimage.Dir("usr/sbin/", 0o755), ownedLink)
	for _, apply := range []bool{false, true} {
		e := compareWithStorage(t, stream, apply)
		for _, p := range []string{"usr/bin/ping4", "usr/sbin/arping"} {
			if got := getxattr(t, e.path(p), "security.capability"); !bytes.Equal(got, capNetBindService()) {
				t.Errorf("apply=%v: %s: security.capability = %x, want %x", apply, p, got, capNetBindService())
			}
		}
	}
}

// A hard link to a symlink shares the symlink's inode; the storage library sets neither its mode
// nor its times from the link entry.
func TestHardlinkToSymlinkKeepsItsTimes(t *testing.T) {
	testenv.RequireRoot(t)
	sym := testimage.Symlink("bin/sh", "dash")
	sym.Header.ModTime = time.Date(2003, 3, 3, 3, 3, 3, 0, time.UTC)
	link := testimage.Hardlink("bin/sh.link", "bin/sh")
	link.Header.ModTime = time.Date(2020, 2, 2, 2, 2, 2, 0, time.UTC)
	for _, apply := range []bool{false, true} {
		e := compareWithStorage(t, makeTar(t, testimage.Dir("bin/", 0o755), sym, link), apply)
		checkMtime(t, e.path("bin/sh"), sym.Header.ModTime)
	}
}

// Parent directories the layer does not list get what the storage library's MkdirAll gives them:
// 0755 and, below a setgid directory, the setgid bit the kernel passes down (overlay: owned by
// root:root; vfs: the group the kernel passes down too).
func TestImplicitDirsLikeStorageLibrary(t *testing.T) {
	testenv.RequireRoot(t)
	shared := testimage.Dir("srv/", 0o2775)
	shared.Header.Gid = 50
	stream := makeTar(t, shared, testimage.File("srv/a/b/f", 0o644, "f"), testimage.File("opt/x/y", 0o644, "y"))
	for _, apply := range []bool{false, true} {
		e := compareWithStorage(t, stream, apply)
		checkMode(t, e.path("srv/a/b"), unix.S_IFDIR, 0o2755)
		checkMode(t, e.path("opt/x"), unix.S_IFDIR, 0o755)
	}
}

// Times before 1970 or after 2262 are written as the storage library writes them: 1970-01-01 for
// everything but symlinks (system.Chtimes), which keep theirs (or wrap around as UnixNano does).
func TestOutOfRangeTimesLikeStorageLibrary(t *testing.T) {
	testenv.RequireRoot(t)
	before, after := time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)
	var entries []testimage.Entry
	for i, mtime := range []time.Time{before, after} {
		d, f, l := testimage.Dir(fmt.Sprintf("d%d/", i), 0o755), testimage.File(fmt.Sprintf("f%d", i), 0o644, "x"), testimage.Symlink(fmt.Sprintf("l%d", i), "f0")
		fifo := testimage.Entry{Header: tar.Header{Typeflag: tar.TypeFifo, Name: fmt.Sprintf("p%d", i), Mode: 0o644}}
		for _, e := range []*testimage.Entry{&d, &f, &l, &fifo} {
			e.Header.ModTime, e.Header.AccessTime = mtime, mtime
		}
		entries = append(entries, d, f, l, fifo)
	}
	for _, apply := range []bool{false, true} {
		e := compareWithStorage(t, makeTar(t, entries...), apply)
		checkMtime(t, e.path("f0"), time.Unix(0, 0))
		checkMtime(t, e.path("d1"), time.Unix(0, 0))
		checkMtime(t, e.path("l0"), before)
	}
}

func keys(maps ...map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		seen := map[string]bool{}
		for _, m := range maps {
			for k := range m {
				if !seen[k] {
					seen[k] = true
					if !yield(k) {
						return
					}
				}
			}
		}
	}
}

// snapshot describes every node below root: type, mode, owner, device, size, content, link
// target, mtime, xattrs and hardlink identity.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	inodes := map[uint64]string{}
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		var b strings.Builder
		fmt.Fprintf(&b, "mode=%o owner=%d:%d", st.Mode, st.Uid, st.Gid)
		typ := st.Mode & unix.S_IFMT
		switch typ {
		case unix.S_IFREG:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " size=%d sha256=%x", st.Size, sha256.Sum256(data))
		case unix.S_IFLNK:
			target, _ := os.Readlink(p)
			fmt.Fprintf(&b, " -> %s", target)
		case unix.S_IFCHR, unix.S_IFBLK:
			fmt.Fprintf(&b, " dev=%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		// The root's and whiteouts' times are not set from the layer by either implementation, and
		// neither are those of implicit parent directories: they bear the time of unpacking.
		mtime := time.Unix(st.Mtim.Unix())
		switch {
		case rel == "." || typ == unix.S_IFCHR && st.Rdev == 0:
		case time.Since(mtime) < time.Hour:
			b.WriteString(" mtime=(time of unpacking)")
		default:
			fmt.Fprintf(&b, " mtime=%s", mtime.UTC().Format(time.RFC3339Nano))
		}
		if typ != unix.S_IFDIR {
			if first, ok := inodes[st.Ino]; ok {
				fmt.Fprintf(&b, " hardlink-of=%s", first)
			} else {
				inodes[st.Ino] = rel
			}
		}
		b.WriteString(xattrList(t, p))
		out[rel] = b.String()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// xattrList lists the xattrs of p, except security.selinux (the host's, not the layer's).
func xattrList(t *testing.T, p string) string {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		t.Fatalf("llistxattr %s: %v", p, err)
	}
	var names []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name != "" && name != "security.selinux" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	var b strings.Builder
	for _, name := range names {
		fmt.Fprintf(&b, " %s=%q", name, getxattr(t, p, name))
	}
	return b.String()
}
