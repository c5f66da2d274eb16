package unpack

import (
	"archive/tar"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cargohold/cargohold/internal/testenv"
	"github.com/cargohold/cargohold/internal/testimage"
	"golang.org/x/sys/unix"
)

// opaqueStack unpacks two lower layers and an upper one with opaque dirs, each into its own diff
// dir, and runs HideLower on the upper one as a publish does at commit. It returns the diff dirs,
// upper first (an overlay mount's lowerdir order).
func opaqueStack(t *testing.T) []string {
	t.Helper()
	testenv.RequireRoot(t)
	base := newEnv(t)
	base.mustUnpack(t, makeTar(t,
		testimage.Dir("a/", 0o755), testimage.File("a/x", 0o644, "x"),
		testimage.Dir("a/y/", 0o755), testimage.File("a/y/z", 0o644, "z"), testimage.Dir("a/y/deeper/", 0o755), testimage.File("a/y/deeper/f", 0o644, "f"),
		testimage.Dir("a/d/", 0o755), testimage.File("a/d/inside", 0o644, "inside"),
		testimage.Dir("a/e/", 0o755), testimage.File("a/e/kept-below", 0o644, "kept-below"),
		testimage.Dir("a/q/", 0o755), testimage.File("a/q/z", 0o644, "z"),
		testimage.Dir("r/", 0o755), testimage.File("r/old", 0o644, "old"),
		testimage.Dir("s/", 0o755), testimage.File("s/old", 0o644, "old"),
		testimage.File("top", 0o644, "top"),
	))
	middle := newEnv(t)
	middle.mustUnpack(t, makeTar(t,
		testimage.Dir("a/", 0o755), testimage.File("a/w", 0o644, "w"), testimage.File("a/.wh.x", 0o644, ""),
		testimage.File("a/q", 0o644, "a file over the dir a/q below"),
	))
	upper := newEnv(t)
	res, _ := upper.mustUnpack(t, makeTar(t,
		testimage.Dir("a/", 0o750),
		testimage.File("a/early", 0o644, "written before the marker"),
		testimage.File("a/.wh..wh..opq", 0o644, ""),
		testimage.Dir("a/y/", 0o755), testimage.File("a/y/new", 0o644, "new"), // a dir the lower layers have too
		testimage.Dir("a/q/", 0o755), testimage.File("a/q/mine", 0o644, "mine"), // a dir where the lower layers show a file
		testimage.File("a/d", 0o644, "a file where the lower layers have a dir"),
		testimage.Dir("a/fresh/", 0o755), testimage.File("a/fresh/.wh..wh..opq", 0o644, ""), // opaque, nothing below
		testimage.File("r/.wh..wh..opq", 0o644, ""), testimage.File("r", 0o644, "replaced by a file later in the layer"),
		testimage.Symlink("link", "s"), testimage.File("link/.wh..wh..opq", 0o644, ""), // opaque through a symlink: s itself
		testimage.File("./.wh.top", 0o644, ""),
	))
	if want := []string{"a", "a/fresh", "r", "s"}; !slices.Equal(res.OpaqueDirs, want) {
		t.Errorf("OpaqueDirs = %q, want %q", res.OpaqueDirs, want)
	}
	if err := HideLower(upper.root, res.OpaqueDirs, []string{middle.root, base.root}); err != nil {
		t.Fatalf("HideLower: %v", err)
	}
	return []string{upper.root, middle.root, base.root}
}

// In the upper layer's diff dir: a whiteout for each lower name the opaque dir hides, recursively
// in the dirs it shares with the lower layers, the kernel's opaque flag, and no user.* attribute.
func TestHideLowerWritesWhiteouts(t *testing.T) {
	upper := opaqueStack(t)[0]
	p := func(name string) string { return filepath.Join(upper, name) }
	for _, w := range []string{"a/w", "a/e", "a/y/z", "a/y/deeper", "s/old", "top"} {
		st := checkMode(t, p(w), unix.S_IFCHR, 0)
		if st.Rdev != 0 || st.Uid != 0 || st.Gid != 0 {
			t.Errorf("%s: device %d owner %d:%d, want a 0/0 whiteout owned by root", w, st.Rdev, st.Uid, st.Gid)
		}
	}
	// Hidden below already (the middle layer's whiteout), or not merged (a/q is a file below): a
	// whiteout there would be listed by the kernel.
	if exists(p("a/x")) || exists(p("a/q/z")) {
		t.Error("a whiteout for a name the lower layers do not show")
	}
	checkContent(t, p("a/early"), "written before the marker")
	checkContent(t, p("a/y/new"), "new")
	checkMode(t, p("a/d"), unix.S_IFREG, 0o644)
	if got := readDirNames(t, p("a/fresh")); len(got) != 0 {
		t.Errorf("a/fresh (nothing below it) holds %q, want nothing", got)
	}
	checkMode(t, p("r"), unix.S_IFREG, 0o644)
	// The flag stays where nothing is below (as Podman's own store has it) and goes where the
	// whiteouts do its work: the kernel would list them in a directory it does not merge.
	if v := getxattr(t, p("a/fresh"), opaqueXattr); string(v) != "y" {
		t.Errorf("a/fresh: %s=%q, want y", opaqueXattr, v)
	}
	for _, d := range []string{"a", "s"} {
		if _, err := unix.Lgetxattr(p(d), opaqueXattr, nil); err != unix.ENODATA {
			t.Errorf("%s: %s: %v, want none (ENODATA)", d, opaqueXattr, err)
		}
	}
	// The directory times are the layer's, not those of the whiteouts' creation.
	for _, d := range []string{"a", "a/y"} {
		if st := lstat(t, p(d)); st.Mtim.Sec != testTime.Unix() || st.Mtim.Nsec != int64(testTime.Nanosecond()) {
			t.Errorf("%s: mtime %d.%09d, want the layer's %s", d, st.Mtim.Sec, st.Mtim.Nsec, testTime)
		}
	}
	_ = filepath.WalkDir(upper, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			t.Error(err)
			return nil
		}
		buf := make([]byte, 4096)
		n, _ := unix.Llistxattr(path, buf)
		for _, attr := range strings.Split(string(buf[:n]), "\x00") {
			if strings.HasPrefix(attr, "user.") {
				t.Errorf("%s carries %s: rootful containers would see it", path, attr)
			}
		}
		return nil
	})
}

// The real kernel overlay shows the same tree whether it reads trusted.overlay.opaque (rootful
// Podman) or not (with "userxattr", as rootless Podman mounts it): the whiteouts alone hide what the
// opaque dirs hide.
func TestHideLowerRootlessOverlayView(t *testing.T) {
	layers := opaqueStack(t)
	trees := map[string]string{}
	for _, opt := range []string{"", ",userxattr"} {
		mnt := t.TempDir()
		if err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, "lowerdir="+strings.Join(layers, ":")+opt); err != nil {
			t.Fatalf("mounting the layers with overlay%s: %v", opt, err)
		}
		trees[opt] = listTree(t, mnt)
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Fatal(err)
		}
	}
	want := strings.Join([]string{
		"a/", "a/d", "a/early", "a/fresh/", "a/q/", "a/q/mine", "a/y/", "a/y/new", "link", "r", "s/",
	}, "\n")
	for opt, got := range trees {
		if got != want {
			t.Errorf("overlay%s shows\n%s\nwant\n%s", opt, got, want)
		}
	}
}

// listTree lists every path below root, directories with a trailing slash, sorted.
func listTree(t *testing.T, root string) string {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			rel += "/"
		}
		paths = append(paths, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(paths)
	return strings.Join(paths, "\n")
}

// Without lower layers, without opaque dirs, or with only the root opaque (which the kernel
// ignores), HideLower writes nothing.
func TestHideLowerNothingBelow(t *testing.T) {
	testenv.RequireRoot(t)
	e := newEnv(t)
	res, _ := e.mustUnpack(t, makeTar(t, testimage.Dir("a/", 0o755), testimage.File("a/.wh..wh..opq", 0o644, "")))
	if err := HideLower(e.root, res.OpaqueDirs, nil); err != nil {
		t.Fatal(err)
	}
	if got := readDirNames(t, e.path("a")); len(got) != 0 {
		t.Errorf("a holds %q with no lower layers", got)
	}
	lower := newEnv(t)
	lower.mustUnpack(t, makeTar(t, testimage.Dir("a/", 0o755), testimage.File("a/x", 0o644, "x")))
	rootOpaque := newEnv(t)
	res, _ = rootOpaque.mustUnpack(t, makeTar(t, testimage.File(".wh..wh..opq", 0o644, ""), testimage.File("b", 0o644, "b")))
	if err := HideLower(rootOpaque.root, res.OpaqueDirs, []string{lower.root}); err != nil {
		t.Fatal(err)
	}
	if got := readDirNames(t, rootOpaque.root); !slices.Equal(got, []string{"b"}) {
		t.Errorf("an opaque root holds %q, want only b", got)
	}
	if v := getxattr(t, rootOpaque.root, opaqueXattr); string(v) != "y" {
		t.Errorf("root: %s=%q, want y as the layer has it", opaqueXattr, v)
	}
	plain := newEnv(t)
	res, _ = plain.mustUnpack(t, makeTar(t, testimage.Dir("a/", 0o755), testimage.Entry{Header: tar.Header{Typeflag: tar.TypeReg, Name: "a/y", Mode: 0o644}}))
	if err := HideLower(plain.root, res.OpaqueDirs, []string{lower.root}); err != nil {
		t.Fatal(err)
	}
	if got := readDirNames(t, plain.path("a")); !slices.Equal(got, []string{"y"}) {
		t.Errorf("a holds %q in a layer without opaque dirs, want only y", got)
	}
}
