package storageconf

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.podman.io/storage/types"

	"github.com/cargohold/cargohold/internal/testenv"
)

// writeFile writes data to dir/name and returns the path.
func writeFile(t *testing.T, dir, name string, data []byte, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestAddStoreKeepsModeOwnerAndWritesBackup(t *testing.T) {
	dir := t.TempDir()
	orig := input(t, "debian")
	file := writeFile(t, dir, "storage.conf", orig, 0o640)
	uid, gid := os.Geteuid(), os.Getegid()
	if uid == 0 {
		uid, gid = 1234, 5678 // as root, prove that another owner is kept
		if err := os.Chown(file, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	res, err := AddStore(file, store, Options{Backup: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || res.Created || res.Backup != file+".bak" || !slices.Equal(res.Stores, []string{store}) || res.Driver != "overlay" {
		t.Errorf("result = %+v", res)
	}
	golden(t, "debian-add.conf", readFile(t, file))
	if !bytes.Equal(readFile(t, file+".bak"), orig) {
		t.Error("the backup is not the original content")
	}
	for _, p := range []string{file, file + ".bak"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm() != 0o640 || int(st.Uid) != uid || int(st.Gid) != gid {
			t.Errorf("%s: mode %v owner %d:%d, want 0640 %d:%d", p, fi.Mode().Perm(), st.Uid, st.Gid, uid, gid)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("directory holds %d entries, want storage.conf and its backup (temp files left?)", len(entries))
	}

	// Idempotent: nothing is written the second time, not even the backup.
	before, _ := os.Stat(file)
	time.Sleep(10 * time.Millisecond)
	res, err = AddStore(file, store, Options{Backup: true})
	if err != nil || res.Changed || res.Backup != "" {
		t.Errorf("second AddStore: %+v, %v; want no change", res, err)
	}
	if after, _ := os.Stat(file); !after.ModTime().Equal(before.ModTime()) {
		t.Error("the second AddStore rewrote the file")
	}

	res, err = RemoveStore(file, store, Options{})
	if err != nil || !res.Changed || len(res.Stores) != 0 {
		t.Errorf("RemoveStore: %+v, %v", res, err)
	}
	if !bytes.Equal(readFile(t, file), orig) {
		t.Error("removing the store does not restore the original file")
	}
}

// A symlinked storage.conf (config management often does that) is edited where it lives.
func TestAddStoreThroughSymlink(t *testing.T) {
	dir := t.TempDir()
	real := writeFile(t, dir, "managed/storage.conf", input(t, "oneline"), 0o644)
	link := filepath.Join(dir, "storage.conf")
	if err := os.Symlink("managed/storage.conf", link); err != nil {
		t.Fatal(err)
	}
	res, err := AddStore(link, store, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.File != real {
		t.Errorf("edited %s, want %s", res.File, real)
	}
	if fi, _ := os.Lstat(link); fi.Mode()&os.ModeSymlink == 0 {
		t.Error("the symlink was replaced by a file")
	}
	golden(t, "oneline-add.conf", readFile(t, link))

	dangling := filepath.Join(dir, "dangling.conf")
	setUp(t, os.Symlink("missing/storage.conf", dangling))
	if _, err := AddStore(dangling, store, Options{}); err == nil || !strings.Contains(err.Error(), "symlink to a missing file") {
		t.Errorf("dangling symlink: %v", err)
	}
}

// Files that cannot be patched are left exactly as they were.
func TestAddStoreRefusesAndLeavesFileUntouched(t *testing.T) {
	tests := []struct {
		name, conf, store, want string
	}{
		{"bad toml", "[storage]\ndriver = overlay\n", store, "/storage.conf:2: not valid TOML"},
		{"inline table", "[storage]\noptions = {size = \"\"}\n", store, "/storage.conf:2: storage.options is an inline table"},
		{"bad store", "[storage]\n", "/a,b", "contains a comma"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			file := writeFile(t, dir, "storage.conf", []byte(tt.conf), 0o644)
			old := time.Now().Add(-time.Hour)
			setUp(t, os.Chtimes(file, old, old))
			_, err := AddStore(file, tt.store, Options{Backup: true})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want one containing %q", err, tt.want)
			}
			fi, _ := os.Stat(file)
			if !bytes.Equal(readFile(t, file), []byte(tt.conf)) || !fi.ModTime().Equal(old) {
				t.Error("the file was touched")
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("%d files in the directory, want only storage.conf", len(entries))
			}
		})
	}
}

// A directory the user may not write in (root writes anyway: as root the test runs as nobody).
func TestAddStoreUnwritableDirectory(t *testing.T) {
	if !testenv.Unprivileged(t) {
		return
	}
	dir := t.TempDir()
	file := writeFile(t, dir, "storage.conf", input(t, "debian"), 0o644)
	setUp(t, os.Chmod(dir, 0o555))
	t.Cleanup(func() { setUp(t, os.Chmod(dir, 0o755)) }) // else t.TempDir cannot remove it
	if _, err := AddStore(file, store, Options{}); err == nil || !strings.Contains(err.Error(), "cannot write in "+dir) {
		t.Errorf("error = %v", err)
	}
	if !bytes.Equal(readFile(t, file), input(t, "debian")) {
		t.Error("the file was changed")
	}
}

// A missing file starts as the distribution's file, or as a minimal file that
// containers/storage accepts with the default locations.
func TestAddStoreCreates(t *testing.T) {
	dir := t.TempDir()
	distribution := writeFile(t, dir, "usr/share/containers/storage.conf", input(t, "debian"), 0o644)
	defer func(old string) { distributionFile = old }(distributionFile)

	distributionFile = distribution
	file := filepath.Join(dir, "etc1", "storage.conf")
	if _, err := AddStore(file, store, Options{}); err == nil {
		t.Error("created a file in a missing directory without MakeDirs")
	}
	res, err := AddStore(file, store, Options{MakeDirs: true})
	if err != nil || !res.Created || res.Base != distribution {
		t.Fatalf("from the distribution file: %+v, %v", res, err)
	}
	golden(t, "debian-add.conf", readFile(t, file))
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", fi.Mode().Perm())
	}

	distributionFile = filepath.Join(dir, "none")
	file = filepath.Join(dir, "etc2", "storage.conf")
	if res, err = AddStore(file, store, Options{MakeDirs: true}); err != nil || !res.Created || res.Base != "" {
		t.Fatalf("minimal: %+v, %v", res, err)
	}
	golden(t, "minimal-add.conf", readFile(t, file))

	// containers/storage (the library Podman uses) reads it as intended.
	t.Setenv("CONTAINERS_STORAGE_CONF", file)
	opts, err := types.LoadStoreOptions(types.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if opts.GraphDriverName != "overlay" || opts.GraphRoot != defaultGraphRoot || opts.RunRoot != defaultRunRoot ||
		!slices.Contains(opts.GraphDriverOptions, "imagestore="+store) {
		t.Errorf("containers/storage reads %+v", opts)
	}

	// Base wins over the distribution file.
	base := writeFile(t, dir, "base.conf", input(t, "commented"), 0o644)
	file = filepath.Join(dir, "etc2", "from-base.conf")
	if res, err = AddStore(file, store, Options{Base: base}); err != nil || res.Base != base {
		t.Fatalf("with a base: %+v, %v", res, err)
	}
	golden(t, "commented-add.conf", readFile(t, file))

	// Removing from a missing file creates nothing.
	file = filepath.Join(dir, "etc2", "missing.conf")
	if res, err = RemoveStore(file, store, Options{}); err != nil || res.Changed {
		t.Errorf("remove from a missing file: %+v, %v", res, err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Error("RemoveStore created the file")
	}
	if res, err = RemoveStore(filepath.Join(dir, "no-such-dir", "storage.conf"), store, Options{}); err != nil || res.Changed {
		t.Errorf("remove from a missing directory: %+v, %v", res, err)
	}
}

func TestDropIn(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "storage.conf.d")
	res, err := AddDropIn(dir, DefaultDropInName, store, false)
	if err != nil || !res.Created {
		t.Fatalf("%+v, %v", res, err)
	}
	golden(t, "dropin-add.conf", readFile(t, res.File))
	if res, err = AddDropIn(dir, DefaultDropInName, store, false); err != nil || res.Changed {
		t.Errorf("second AddDropIn: %+v, %v", res, err)
	}
	if res, err = AddDropIn(dir, DefaultDropInName, "/srv/other", false); err != nil || !slices.Equal(res.Stores, []string{store, "/srv/other"}) {
		t.Errorf("another store: %+v, %v", res, err)
	}

	// A drop-in whose list replaces the others is not silently extended.
	writeFile(t, dir, "50-site.conf", []byte("[storage.options]\nadditionalimagestores = [\"/a\"]\n"), 0o644)
	if _, err := AddDropIn(dir, "50-site.conf", store, false); err == nil || !strings.Contains(err.Error(), "50-site.conf:2: this list replaces") {
		t.Errorf("replacing list: %v", err)
	}
	if _, err := AddDropIn(dir, "cargohold.toml", store, false); err == nil {
		t.Error("accepted a drop-in name without .conf")
	}
}

func TestUserFile(t *testing.T) {
	home := t.TempDir()
	file := UserFile(home)
	owner := &Owner{UID: os.Geteuid(), GID: os.Getegid()}
	if os.Geteuid() == 0 {
		owner = &Owner{UID: 4321, GID: 4321}
	}
	fuse := "/usr/bin/fuse-overlayfs"
	res, err := AddUserStore(file, store, UserOptions{MountProgram: &fuse, Home: home, Owner: owner})
	if err != nil || !res.Created {
		t.Fatalf("%+v, %v", res, err)
	}
	got := bytes.ReplaceAll(readFile(t, file), []byte(home), []byte("HOME"))
	golden(t, "user-add.conf", got)
	for _, p := range []string{filepath.Join(home, ".config"), filepath.Join(home, ".config", "containers"), file} {
		fi, _ := os.Stat(p)
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != owner.UID || int(st.Gid) != owner.GID {
			t.Errorf("%s belongs to %d:%d, want %d:%d", p, st.Uid, st.Gid, owner.UID, owner.GID)
		}
	}

	// containers/storage reads it as the user's file: their default roots, the store, fuse-overlayfs.
	t.Setenv("CONTAINERS_STORAGE_CONF", file)
	opts, err := types.LoadStoreOptions(types.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if opts.GraphDriverName != "overlay" || !slices.Contains(opts.GraphDriverOptions, "imagestore="+store) ||
		!slices.Contains(opts.GraphDriverOptions, "overlay.mount_program=/usr/bin/fuse-overlayfs") {
		t.Errorf("containers/storage reads %+v", opts)
	}

	res, err = RemoveUserStore(file, store, UserOptions{Home: home, Owner: owner})
	if err != nil || !res.Changed || len(res.Stores) != 0 {
		t.Errorf("remove: %+v, %v", res, err)
	}
}

// Root writing into a user's home must not follow a symlink the user planted.
func TestUserFileRefusesSymlinks(t *testing.T) {
	home := t.TempDir()
	elsewhere := t.TempDir()
	owner := &Owner{UID: os.Geteuid(), GID: os.Getegid()}

	setUp(t, os.Symlink(elsewhere, filepath.Join(home, ".config")))
	_, err := AddUserStore(UserFile(home), store, UserOptions{Home: home, Owner: owner})
	if err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("symlinked ~/.config: %v", err)
	}
	setUp(t, os.Remove(filepath.Join(home, ".config")))

	victim := writeFile(t, elsewhere, "victim", []byte("precious\n"), 0o644)
	setUp(t, os.MkdirAll(filepath.Join(home, ".config", "containers"), 0o700))
	setUp(t, os.Symlink(victim, UserFile(home)))
	_, err = AddUserStore(UserFile(home), store, UserOptions{Home: home, Owner: owner})
	if err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("symlinked storage.conf: %v", err)
	}
	if !bytes.Equal(readFile(t, victim), []byte("precious\n")) {
		t.Error("the symlink's target was written")
	}
	if entries, _ := os.ReadDir(elsewhere); len(entries) != 1 {
		t.Errorf("%d files where the symlinks pointed, want 1", len(entries))
	}
}

func TestRegister(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "storage.conf", input(t, "commented"), 0o644)
	storeDir := t.TempDir()
	if changed, err := Register(file, storeDir, "overlay"); err != nil || !changed {
		t.Fatalf("Register: %v, %v", changed, err)
	}
	if changed, err := Register(file, storeDir, "overlay"); err != nil || changed {
		t.Errorf("second Register: %v, %v", changed, err)
	}
	if _, err := Register(file, filepath.Join(dir, "missing"), "overlay"); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing store: %v", err)
	}
}

// setUp stops the test when preparing its files failed: what follows would test something else.
func setUp(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
