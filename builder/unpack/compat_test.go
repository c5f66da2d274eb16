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

	"go.podman.io/storage/pkg/archive"
	"golang.org/x/sys/unix"
)

// TestMatchesContainersStorage unpacks one layer with Layer and with containers/storage's own
// applier (what "podman pull" does for the overlay driver) and compares the two trees.
func TestMatchesContainersStorage(t *testing.T) {
	requireRoot(t)
	ping := reg("usr/bin/ping", 0o4755, "ping")
	ping.hdr.Uid, ping.hdr.Gid = 1000, 1000
	ping.hdr.PAXRecords = map[string]string{
		"SCHILY.xattr.security.capability": string(capNetBindService()),
		"SCHILY.xattr.user.origin":         "test",
	}
	older := time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC)
	oldFile := reg("usr/share/old", 0o444, "old")
	oldFile.hdr.ModTime = older
	shared := dir("srv/", 0o2775)
	shared.hdr.Gid = 50
	stream := makeTar(t,
		dir("./", 0o755),
		dir("usr/", 0o755), dir("usr/bin/", 0o755), dir("usr/share/", 0o755),
		ping, oldFile,
		hardlink("usr/bin/ping6", "usr/bin/ping"),
		symlink("usr/bin/sh", "dash"),
		symlink("lib", "usr/lib"),
		dir("tmp/", 0o1777),
		shared, reg("srv/f", 0o664, "f"),
		dir("etc/", 0o755), reg("etc/.wh.motd", 0o644, ""),
		dir("var/", 0o755), dir("var/cache/", 0o755), reg("var/cache/.wh..wh..opq", 0o644, ""),
		dir("dev/", 0o755),
		entry{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/console", Mode: 0o600, Devmajor: 5, Devminor: 1}},
		entry{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/sda", Mode: 0o660, Gid: 6, Devmajor: 8, Devminor: 0}},
		entry{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "dev/fifo", Mode: 0o644}},
		entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "var/lib.img", Mode: 0o600}, body: append(make([]byte, 1<<20), 'x')},
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
		// The root's and whiteouts' times are not set from the layer by either implementation.
		if rel != "." && !(typ == unix.S_IFCHR && st.Rdev == 0) {
			fmt.Fprintf(&b, " mtime=%s", time.Unix(st.Mtim.Unix()).UTC().Format(time.RFC3339Nano))
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
