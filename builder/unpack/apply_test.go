package unpack

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cargohold/cargohold/internal/testenv"
	"github.com/cargohold/cargohold/internal/testimage"
	"go.podman.io/storage/pkg/archive"
	"golang.org/x/sys/unix"
)

// In apply mode (vfs stores) a layer lands on a copy of its parent's tree: whiteouts delete, opaque
// markers empty their directory of what lower layers left, and nothing overlay-specific is written.
func TestApplyOntoLowerTree(t *testing.T) {
	testenv.RequireRoot(t)
	e := newEnv(t)
	lower := makeTar(t,
		testimage.Dir("etc/", 0o755), testimage.File("etc/motd", 0o644, "hello"), testimage.File("etc/keep", 0o644, "keep"),
		testimage.Dir("var/", 0o755), testimage.Dir("var/cache/", 0o755), testimage.File("var/cache/old1", 0o644, "1"),
		testimage.Dir("var/cache/sub/", 0o755), testimage.File("var/cache/sub/old2", 0o644, "2"),
		testimage.Dir("opt/", 0o755), testimage.Dir("opt/tree/", 0o755), testimage.File("opt/tree/leaf", 0o644, "leaf"),
	)
	if _, _, err := e.unpack(t, lower, Options{Apply: true}); err != nil {
		t.Fatal(err)
	}
	upper := makeTar(t,
		testimage.Dir("etc/", 0o755), testimage.File("etc/.wh.motd", 0o644, ""),
		testimage.Dir("var/", 0o755), testimage.Dir("var/cache/", 0o700),
		testimage.File("var/cache/new", 0o644, "new"), // written before the marker: it must survive it
		testimage.File("var/cache/.wh..wh..opq", 0o644, ""),
		testimage.File("var/cache/deep/file", 0o644, "deep"), // parents created on the way survive too
		testimage.File(".wh.opt", 0o644, ""),
		testimage.File(".wh.never-there", 0o644, ""),
	)
	if _, _, err := e.unpack(t, upper, Options{Apply: true}); err != nil {
		t.Fatal(err)
	}

	for _, gone := range []string{"etc/motd", "opt", "var/cache/old1", "var/cache/sub", "never-there"} {
		if exists(e.path(gone)) {
			t.Errorf("%s survived its whiteout / opaque marker", gone)
		}
	}
	checkContent(t, e.path("etc/keep"), "keep")
	checkContent(t, e.path("var/cache/new"), "new")
	checkContent(t, e.path("var/cache/deep/file"), "deep")
	if got := readDirNames(t, e.path("var/cache")); !slices.Equal(got, []string{"deep", "new"}) {
		t.Errorf("var/cache holds %v, want deep and new", got)
	}
	checkMode(t, e.path("var/cache"), unix.S_IFDIR, 0o700)
	for _, attr := range []string{opaqueXattr, "user.overlay.opaque"} {
		if v, err := unix.Lgetxattr(e.path("var/cache"), attr, make([]byte, 8)); err == nil {
			t.Errorf("apply mode set %s (%d bytes) on an opaque dir", attr, v)
		}
	}
	err := filepath.WalkDir(e.root, func(p string, d os.DirEntry, err error) error {
		if err == nil && (strings.HasPrefix(d.Name(), archive.WhiteoutPrefix) || d.Type()&os.ModeCharDevice != 0) {
			t.Errorf("apply mode left %s", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	e.checkOutside(t)
}
