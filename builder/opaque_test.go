package builder

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cargohold/cargohold/internal/testenv"
)

// A published overlay image shows its opaque dir (app layer 3's data/opq) the same to rootful readers
// (the kernel's overlay, which reads trusted.overlay.opaque) and rootless ones (overlay with
// userxattr, which does not), and carries no user.overlay.* attribute that rootful containers would
// see: the layer's diff dir holds whiteouts for what the opaque dir hides.
func TestOpaqueDirIsOpaqueForEveryReader(t *testing.T) {
	testenv.RequireRoot(t)
	fx := fixtures
	store, dir := openStore(t)
	p := &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t)}}
	mustPublish(t, p, fx.ref("app:1"), "localhost/cargotest/app:1")

	dirs := layerDirs(t, dir, fx.written["app:1"].Config.Encoded())
	var lowers []string // the mount's lowerdir: top layer first
	for i := len(dirs) - 1; i >= 0; i-- {
		lowers = append(lowers, dirs[i])
	}
	for _, opt := range []string{"", ",userxattr"} {
		mnt := t.TempDir()
		if err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, "lowerdir="+strings.Join(lowers, ":")+opt); err != nil {
			t.Fatalf("mounting the image's layers (overlay%s): %v", opt, err)
		}
		entries, err := os.ReadDir(filepath.Join(mnt, "data/opq"))
		if uerr := unix.Unmount(mnt, 0); uerr != nil {
			t.Fatal(uerr)
		}
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if !slices.Equal(names, []string{"new"}) {
			t.Errorf("overlay%s: data/opq holds %v, want only [new]", opt, names)
		}
	}
	for _, l := range lowers {
		buf := make([]byte, 4096)
		n, err := unix.Llistxattr(filepath.Join(l, "data/opq"), buf)
		if err != nil {
			continue // not in this layer
		}
		for _, attr := range strings.Split(string(buf[:n]), "\x00") {
			if strings.HasPrefix(attr, "user.overlay.") {
				t.Errorf("%s/data/opq carries %s, which rootful containers see", l, attr)
			}
		}
	}
}
