package layout

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cargohold/cargohold/internal/testenv"
	"golang.org/x/sys/unix"
)

// CopyEntry replaces an entry of another kind, and gives every entry src's owner and mode.
func TestCopyEntry(t *testing.T) {
	testenv.RequireRoot(t)
	src, dst := t.TempDir(), t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(src, "file"), []byte("new"), 0o644))
	must(os.Lchown(filepath.Join(src, "file"), 1000, 1001))
	must(unix.Chmod(filepath.Join(src, "file"), 0o4755)) // after the chown, which clears setuid
	must(os.Symlink("../target", filepath.Join(src, "link")))
	must(os.Mkdir(filepath.Join(src, "dir"), 0o750))
	must(os.Chmod(filepath.Join(src, "dir"), 0o750))
	// in dst each name is something else: a dir with contents, a file, a symlink
	must(os.MkdirAll(filepath.Join(dst, "file/sub"), 0o755))
	must(os.WriteFile(filepath.Join(dst, "link"), []byte("old"), 0o644))
	must(os.Symlink("elsewhere", filepath.Join(dst, "dir")))
	root, err := os.OpenRoot(dst)
	must(err)
	defer func() { _ = root.Close() }()
	for _, name := range []string{"file", "link", "dir"} {
		must(CopyEntry(root, filepath.Join(src, name), name))
	}
	var st unix.Stat_t
	must(unix.Lstat(filepath.Join(dst, "file"), &st))
	if data, _ := os.ReadFile(filepath.Join(dst, "file")); string(data) != "new" || st.Mode != unix.S_IFREG|0o4755 || st.Uid != 1000 || st.Gid != 1001 {
		t.Errorf("file: %q mode %o owner %d:%d, want \"new\" 104755 1000:1001", data, st.Mode, st.Uid, st.Gid)
	}
	if target, err := os.Readlink(filepath.Join(dst, "link")); err != nil || target != "../target" {
		t.Errorf("link: %q, %v; want a symlink to ../target", target, err)
	}
	must(unix.Lstat(filepath.Join(dst, "dir"), &st))
	if st.Mode != unix.S_IFDIR|0o750 {
		t.Errorf("dir: mode %o, want a directory 0750", st.Mode)
	}
	if entries, _ := os.ReadDir(dst); len(entries) != 3 {
		t.Errorf("dst holds %d entries, want 3 (no temp file left)", len(entries))
	}
}
