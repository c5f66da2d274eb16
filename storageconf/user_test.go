package storageconf

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cargohold/cargohold/layout/driver"
)

// podmanUser is a rootless user's home with (optionally) Podman storage made with some driver, as
// Podman leaves it: <driver>-layers/ and libpod's database.
type podmanUser struct {
	t    *testing.T
	home string
	l    *Lookup
}

func newPodmanUser(t *testing.T) *podmanUser {
	s := newSandbox(t)
	home := t.TempDir()
	return &podmanUser{t: t, home: home, l: &Lookup{UID: 4321, Home: home, Name: "alice", Root: s.root}}
}

func (u *podmanUser) graphRoot() string {
	return filepath.Join(u.home, ".local", "share", "containers", "storage")
}

// madeWith makes the user's storage as Podman's first run with driver does (mountProgram: overlay's
// .has-mount-program, "" none).
func (u *podmanUser) madeWith(driver, mountProgram string) {
	u.t.Helper()
	root := u.graphRoot()
	for _, d := range []string{driver + "-layers", driver + "-images", driver, "libpod"} {
		setUp(u.t, os.MkdirAll(filepath.Join(root, d), 0o700))
	}
	writeFile(u.t, root, "libpod/bolt_state.db", []byte("bolt"), 0o600)
	if mountProgram != "" {
		writeFile(u.t, root, "overlay/.has-mount-program", []byte(mountProgram), 0o600)
	}
}

func (u *podmanUser) file() string { return UserFile(u.home) }

func (u *podmanUser) writeConf(text string) []byte {
	u.t.Helper()
	return readFile(u.t, writeFile(u.t, filepath.Dir(u.file()), "storage.conf", []byte(text), 0o644))
}

func (u *podmanUser) options(d driver.Driver, mountProgram *string) UserOptions {
	return UserOptions{Driver: d, MountProgram: mountProgram, Home: u.home, User: u.l}
}

func ptr(s string) *string { return &s }

// What conf user writes keeps the user's own Podman storage working, or nothing is written.
func TestAddUserStoreFollowsTheUsersStorage(t *testing.T) {
	fuse, _ := exec.LookPath("fuse-overlayfs")
	tests := []struct {
		name         string
		setUp        func(u *podmanUser)
		driver       driver.Driver
		mountProgram *string
		wantDriver   string // of the created file; "" when refused
		wantMount    string
		refused      []string // what the refusal says
	}{
		{name: "fresh user", driver: "overlay", wantDriver: "overlay", wantMount: fuse},
		{name: "fresh user, explicit no mount program", driver: "overlay", mountProgram: ptr(""), wantDriver: "overlay"},
		{name: "fresh user, vfs store", driver: "vfs", wantDriver: "vfs"},
		{name: "vfs storage, vfs store", setUp: func(u *podmanUser) { u.madeWith("vfs", "") }, driver: "vfs", wantDriver: "vfs"},
		{name: "overlay storage with fuse-overlayfs", setUp: func(u *podmanUser) { u.madeWith("overlay", "true") },
			driver: "overlay", wantDriver: "overlay", wantMount: fuse},
		{name: "overlay storage with the kernel's overlay", setUp: func(u *podmanUser) { u.madeWith("overlay", "false") },
			driver: "overlay", wantDriver: "overlay", wantMount: ""},
		{name: "vfs storage, overlay store", setUp: func(u *podmanUser) { u.madeWith("vfs", "") }, driver: "overlay",
			refused: []string{"alice's Podman storage", "was made with the vfs driver", "vfs driver does not support overlay.imagestore options",
				"podman system reset", "register a vfs store for alice (cargohold publish --driver vfs)"}},
		{name: "overlay storage, vfs store", setUp: func(u *podmanUser) { u.madeWith("overlay", "true") }, driver: "vfs",
			refused: []string{"was made with the overlay driver", "podman system reset"}},
		{name: "btrfs storage", setUp: func(u *podmanUser) { u.madeWith("btrfs", "") }, driver: "overlay",
			refused: []string{"was made with the btrfs driver"}},
		{name: "records of two drivers", setUp: func(u *podmanUser) { u.madeWith("vfs", ""); u.madeWith("overlay", "true") },
			driver: "overlay", refused: []string{"several drivers (overlay, vfs)", "podman info --format"}},
		{name: "a database without records", setUp: func(u *podmanUser) {
			writeFile(t, u.graphRoot(), "db.sql", []byte("sqlite"), 0o600)
		}, driver: "overlay", refused: []string{"storage/db.sql", "no records of any driver"}},
		{name: "graphroot moved by the system file's rootless_storage_path", setUp: func(u *podmanUser) {
			writeFile(t, u.l.Root, "etc/containers/storage.conf", []byte("[storage]\nrootless_storage_path = \"$HOME/elsewhere/$USER\"\n"), 0o644)
			setUp(t, os.MkdirAll(filepath.Join(u.home, "elsewhere", "alice", "vfs-layers"), 0o700))
		}, driver: "overlay", refused: []string{"elsewhere/alice was made with the vfs driver"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := newPodmanUser(t)
			if tt.setUp != nil {
				tt.setUp(u)
			}
			res, err := AddUserStore(u.file(), store, u.options(tt.driver, tt.mountProgram))
			if tt.refused != nil {
				if !errors.Is(err, ErrUserStorage) {
					t.Fatalf("not refused: %+v, %v", res, err)
				}
				for _, want := range tt.refused {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("the refusal does not say %q:\n%v", want, err)
					}
				}
				if _, err := os.Stat(u.file()); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("the refused conf user wrote %s", u.file())
				}
				return
			}
			if err != nil || !res.Created {
				t.Fatalf("%+v, %v", res, err)
			}
			fc, err := decodeFile(u.file())
			if err != nil {
				t.Fatal(err)
			}
			if fc.Storage.Driver != tt.wantDriver || fc.Storage.Options.Overlay.MountProgram != tt.wantMount {
				t.Errorf("wrote driver %q, mount_program %q; want %q, %q:\n%s", fc.Storage.Driver,
					fc.Storage.Options.Overlay.MountProgram, tt.wantDriver, tt.wantMount, readFile(t, u.file()))
			}
		})
	}
}

// An existing file is only ever added to; one that cannot work with the store is left alone.
func TestAddUserStoreToAnExistingFile(t *testing.T) {
	tests := []struct {
		name, conf string
		storage    string // the driver the user's storage was made with ("": none yet)
		refused    string
	}{
		{name: "the store's driver", conf: "[storage]\ndriver = \"overlay\"\n"},
		{name: "no driver, overlay storage", conf: "# mine\n", storage: "overlay"},
		{name: "another driver", conf: "[storage]\ndriver = \"vfs\"\n", refused: `sets driver = "vfs": Podman with it cannot read an overlay store`},
		{name: "no driver, no storage yet", conf: "# mine\n", refused: `sets no driver and alice has no Podman storage yet`},
		{name: "graphroot moved to vfs storage", conf: "[storage]\ndriver = \"overlay\"\ngraphroot = \"$HOME/vfs-root\"\n",
			refused: "vfs-root was made with the vfs driver"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := newPodmanUser(t)
			if tt.storage != "" {
				u.madeWith(tt.storage, "true")
			}
			setUp(t, os.MkdirAll(filepath.Join(u.home, "vfs-root", "vfs-layers"), 0o700))
			before := u.writeConf(tt.conf)
			res, err := AddUserStore(u.file(), store, u.options("overlay", nil))
			if tt.refused != "" {
				if !errors.Is(err, ErrUserStorage) || !strings.Contains(err.Error(), tt.refused) {
					t.Errorf("error = %v, want one saying %q", err, tt.refused)
				}
				if !bytes.Equal(readFile(t, u.file()), before) {
					t.Error("the refused conf user changed the file")
				}
				return
			}
			if err != nil || !res.Changed || !slices.Equal(res.Stores, []string{store}) {
				t.Fatalf("%+v, %v", res, err)
			}
			if !bytes.Equal(readFile(t, u.file()+OriginalSuffix), before) {
				t.Errorf("%s does not hold the original", u.file()+OriginalSuffix)
			}
		})
	}
}

// conf user --remove puts back exactly what was there: the original file byte for byte, or no file.
func TestRemoveUserStoreRestores(t *testing.T) {
	inputs := []string{"debian", "commented", "oneline", "no-key", "no-options", "dotted", "root-dotted",
		"root-dotted-driver", "empty", "crlf", "no-eol", "no-trailing-comma", "comment-only"}
	for _, in := range inputs {
		t.Run(in, func(t *testing.T) {
			u := newPodmanUser(t)
			u.madeWith("overlay", "true")
			before := u.writeConf(string(input(t, in)))
			if _, err := AddUserStore(u.file(), store, u.options("overlay", nil)); err != nil {
				t.Fatal(err)
			}
			res, err := RemoveUserStore(u.file(), store, u.options("overlay", nil))
			if err != nil || res.Restored != u.file()+OriginalSuffix {
				t.Fatalf("%+v, %v", res, err)
			}
			if got := readFile(t, u.file()); !bytes.Equal(got, before) {
				t.Errorf("not restored byte for byte:\n--- got\n%s\n--- want\n%s", got, before)
			}
			if _, err := os.Stat(u.file() + OriginalSuffix); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s is still there", u.file()+OriginalSuffix)
			}
		})
	}
}

// A file conf user created goes again: today's, and the one earlier versions wrote (which broke vfs
// users: removing it is their fix).
func TestRemoveUserStoreDeletesWhatItCreated(t *testing.T) {
	u := newPodmanUser(t)
	if _, err := AddUserStore(u.file(), store, u.options("overlay", ptr("/usr/bin/fuse-overlayfs"))); err != nil {
		t.Fatal(err)
	}
	res, err := RemoveUserStore(u.file(), store, u.options("overlay", nil))
	if err != nil || !res.Deleted {
		t.Fatalf("%+v, %v", res, err)
	}
	if _, err := os.Stat(u.file()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s is still there", u.file())
	}

	earlier := bytes.ReplaceAll(input(t, "earlier-user"), []byte("HOME"), []byte(u.home))
	u.writeConf(string(earlier))
	if res, err = RemoveUserStore(u.file(), store, u.options("overlay", nil)); err != nil || !res.Deleted {
		t.Errorf("the earlier template: %+v, %v", res, err)
	}

	// Once the user changed it, it is theirs: only the store goes.
	if _, err := AddUserStore(u.file(), store, u.options("vfs", nil)); err != nil {
		t.Fatal(err)
	}
	edited := append(readFile(t, u.file()), "# mine\n"...)
	u.writeConf(string(edited))
	if res, err = RemoveUserStore(u.file(), store, u.options("vfs", nil)); err != nil || res.Deleted || !res.Changed {
		t.Errorf("an edited file: %+v, %v", res, err)
	}
	if !bytes.Contains(readFile(t, u.file()), []byte("# mine")) {
		t.Error("the user's change is gone")
	}
}

// Several stores, and a user editing the file in between: only what cargohold added goes, and the
// original comes back only when the file is otherwise as it was.
func TestRemoveUserStoreAfterChanges(t *testing.T) {
	u := newPodmanUser(t)
	u.madeWith("overlay", "true")
	before := u.writeConf("[storage]\ndriver = \"overlay\"\n")
	opts := u.options("overlay", nil)
	for _, s := range []string{"/a", "/b"} {
		if _, err := AddUserStore(u.file(), s, opts); err != nil {
			t.Fatal(err)
		}
	}
	if res, err := RemoveUserStore(u.file(), "/a", opts); err != nil || res.Restored != "" || !slices.Equal(res.Stores, []string{"/b"}) {
		t.Fatalf("/a: %+v, %v", res, err)
	}
	if res, err := RemoveUserStore(u.file(), "/b", opts); err != nil || res.Restored == "" {
		t.Fatalf("/b: %+v, %v", res, err)
	}
	if !bytes.Equal(readFile(t, u.file()), before) {
		t.Errorf("not restored:\n%s", readFile(t, u.file()))
	}

	// The user sets something else meanwhile: it stays, and so does the original beside it.
	if _, err := AddUserStore(u.file(), "/a", opts); err != nil {
		t.Fatal(err)
	}
	u.writeConf(string(readFile(t, u.file())) + "[storage.options.overlay]\nmountopt = \"nodev\"\n")
	res, err := RemoveUserStore(u.file(), "/a", opts)
	if err != nil || res.Restored != "" || len(res.Notes) != 1 || !strings.Contains(res.Notes[0], "holds the file as it was before") {
		t.Fatalf("%+v, %v", res, err)
	}
	if !bytes.Contains(readFile(t, u.file()), []byte("mountopt")) || !bytes.Equal(readFile(t, u.file()+OriginalSuffix), before) {
		t.Error("the user's change or the original is gone")
	}
	// The next conf user starts from the file as the user left it.
	now := readFile(t, u.file())
	if _, err := AddUserStore(u.file(), "/a", opts); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, u.file()+OriginalSuffix), now) {
		t.Error("the stale original was kept")
	}
}
