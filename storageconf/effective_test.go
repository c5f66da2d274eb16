package storageconf

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// sandbox is a fake / (for /etc and /usr/share) and a home directory, with the
// environment cleared of everything that steers containers/storage.
type sandbox struct {
	t          *testing.T
	root, home string
}

func newSandbox(t *testing.T) *sandbox {
	s := &sandbox{t: t, root: t.TempDir(), home: t.TempDir()}
	t.Setenv("HOME", s.home)
	for _, env := range []string{"CONTAINERS_STORAGE_CONF", "CONTAINERS_STORAGE_CONF_OVERRIDE", "XDG_CONFIG_HOME", "STORAGE_DRIVER", "STORAGE_OPTS"} {
		t.Setenv(env, "")
		if err := os.Unsetenv(env); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// file writes a storage.conf listing stores; path is under the fake root unless it
// starts with "~/".
func (s *sandbox) file(path, extra string, stores ...string) string {
	s.t.Helper()
	dir := s.root
	if rest, ok := strings.CutPrefix(path, "~/"); ok {
		dir, path = s.home, rest
	}
	var q []string
	for _, st := range stores {
		q = append(q, quote(st))
	}
	roots := "" // a system file's: rootful Podman up to 5.x fails without them
	if dir == s.root {
		roots = "runroot = \"/run/containers/storage\"\ngraphroot = " + quote(filepath.Join(s.root, "var/lib/containers/storage")) + "\n"
	}
	text := "[storage]\ndriver = \"overlay\"\n" + roots + "\n[storage.options]\nadditionalimagestores = [" + strings.Join(q, ", ") + extra + "]\n"
	return writeFile(s.t, dir, path, []byte(text), 0o644)
}

func (s *sandbox) resolve(uid int, r Reader) *Effective {
	s.t.Helper()
	eff, err := Resolve(Lookup{UID: uid, Reader: r, Root: s.root})
	if err != nil {
		s.t.Fatal(err)
	}
	return eff
}

func TestResolveLegacy(t *testing.T) {
	s := newSandbox(t)
	eff := s.resolve(0, Legacy)
	if len(eff.Stores) != 0 || len(eff.Files) != 0 {
		t.Errorf("no files: %+v", eff)
	}

	usr := s.file("usr/share/containers/storage.conf", "", "/usr-store")
	if eff = s.resolve(0, Legacy); !slices.Equal(eff.Stores, []string{"/usr-store"}) || eff.Files[0] != usr {
		t.Errorf("distribution file only: %+v", eff)
	}
	etc := s.file("etc/containers/storage.conf", "", "/etc-store")
	// Drop-ins mean nothing to this Podman.
	s.file("etc/containers/storage.conf.d/90-cargohold.conf", ", {append = true}", "/dropin-store")
	if eff = s.resolve(0, Legacy); !slices.Equal(eff.Stores, []string{"/etc-store"}) || eff.Files[0] != etc {
		t.Errorf("/etc replaces /usr/share: %+v", eff)
	}

	// Rootless: the system file's stores do not apply; only the user's own file counts.
	eff = s.resolve(1000, Legacy)
	if len(eff.Stores) != 0 || eff.Driver != "overlay" || !strings.Contains(strings.Join(eff.Notes, " "), "do not apply to rootless users") {
		t.Errorf("rootless without a file of its own: %+v", eff)
	}
	user := s.file("~/.config/containers/storage.conf", "", "/user-store")
	if eff = s.resolve(1000, Legacy); !slices.Equal(eff.Stores, []string{"/user-store"}) || eff.Files[0] != user {
		t.Errorf("rootless with its own file: %+v", eff)
	}
	// ... which root does not read.
	if eff = s.resolve(0, Legacy); !slices.Equal(eff.Stores, []string{"/etc-store"}) {
		t.Errorf("root read the home file: %+v", eff)
	}

	env := s.file("elsewhere/storage.conf", "", "/env-store")
	t.Setenv("CONTAINERS_STORAGE_CONF", env)
	for _, uid := range []int{0, 1000} {
		if eff = s.resolve(uid, Legacy); !slices.Equal(eff.Stores, []string{"/env-store"}) {
			t.Errorf("uid %d with CONTAINERS_STORAGE_CONF: %+v", uid, eff)
		}
	}
	t.Setenv("STORAGE_OPTS", "overlay.imagestore=/opts-store,overlay.mountopt=nodev")
	if eff = s.resolve(0, Legacy); !slices.Equal(eff.Stores, []string{"/opts-store"}) {
		t.Errorf("STORAGE_OPTS: %+v", eff)
	}
}

func TestResolveLegacyRejectsAppendInMainFile(t *testing.T) {
	s := newSandbox(t)
	s.file("etc/containers/storage.conf", ", {append = true}", "/a")
	if _, err := Resolve(Lookup{UID: 0, Reader: Legacy, Root: s.root}); err == nil || !strings.Contains(err.Error(), "cannot read") {
		t.Errorf("error = %v", err)
	}
}

func TestResolveCurrent(t *testing.T) {
	s := newSandbox(t)
	s.file("usr/share/containers/storage.conf", "", "/usr-store")
	s.file("etc/containers/storage.conf", "", "/etc-store")
	if eff := s.resolve(0, Current); !slices.Equal(eff.Stores, []string{"/etc-store"}) {
		t.Errorf("main file: %+v", eff)
	}

	// A drop-in with {append = true} adds; rootless users read the system file too.
	s.file("etc/containers/storage.conf.d/90-cargohold.conf", ", {append = true}", store)
	for _, uid := range []int{0, 1000} {
		eff := s.resolve(uid, Current)
		if !slices.Equal(eff.Stores, []string{"/etc-store", store}) || len(eff.Files) != 2 {
			t.Errorf("uid %d, appending drop-in: %+v", uid, eff)
		}
	}
	// Rootless-only drop-ins apply to rootless users only.
	s.file("etc/containers/storage.rootless.conf.d/50-users.conf", ", {append = true}", "/users-store")
	if eff := s.resolve(1000, Current); !slices.Equal(eff.Stores, []string{"/etc-store", "/users-store", store}) {
		t.Errorf("rootless drop-in: %+v", eff)
	}
	if eff := s.resolve(0, Current); slices.Contains(eff.Stores, "/users-store") {
		t.Errorf("root read the rootless drop-in: %+v", eff)
	}

	// A drop-in without {append = true} replaces the list before it, and the notes say so.
	// (Not tested after an appending one: containers/storage's list then keeps appending,
	// a quirk of its decoder that Resolve inherits by using it.)
	s.file("etc/containers/storage.conf.d/10-site.conf", "", "/site-store")
	eff := s.resolve(0, Current)
	if !slices.Equal(eff.Stores, []string{"/site-store", store}) || !strings.Contains(strings.Join(eff.Notes, " "), "10-site.conf replaces the list (/etc-store)") {
		t.Errorf("replacing drop-in: %+v", eff)
	}

	// CONTAINERS_STORAGE_CONF turns drop-ins off.
	t.Setenv("CONTAINERS_STORAGE_CONF", s.file("elsewhere/storage.conf", "", "/env-store"))
	if eff := s.resolve(0, Current); !slices.Equal(eff.Stores, []string{"/env-store"}) {
		t.Errorf("CONTAINERS_STORAGE_CONF: %+v", eff)
	}
}

func TestResolveReportsBadFiles(t *testing.T) {
	s := newSandbox(t)
	writeFile(t, s.root, "etc/containers/storage.conf", []byte("[storage]\ndriver = \n"), 0o644)
	for _, r := range []Reader{Legacy, Current} {
		_, err := Resolve(Lookup{UID: 0, Reader: r, Root: s.root})
		if err == nil || !strings.Contains(err.Error(), "etc/containers/storage.conf:2: not valid TOML") {
			t.Errorf("%v: error = %v", r, err)
		}
	}
}

func TestCheck(t *testing.T) {
	s := newSandbox(t)
	realStore := t.TempDir()
	other := filepath.Join(t.TempDir(), "gone")

	r, err := Check(realStore, "overlay", Lookup{UID: 0, Reader: Legacy, Root: s.root})
	if err != nil {
		t.Fatal(err)
	}
	if r.OK() || r.Fix != "cargohold conf patch --store "+realStore {
		t.Errorf("no configuration: %+v", r)
	}

	s.file("etc/containers/storage.conf", "", realStore)
	if r, _ = Check(realStore+"/", "overlay", Lookup{UID: 0, Reader: Legacy, Root: s.root}); !r.OK() {
		t.Errorf("listed: %+v", r)
	}
	// The same file does nothing for rootless users of Podman up to 5.x.
	r, _ = Check(realStore, "overlay", Lookup{UID: 1000, Reader: Legacy, Root: s.root})
	if r.OK() || r.Fix != "cargohold conf user --store "+realStore {
		t.Errorf("rootless: %+v", r)
	}
	// Podman 6 reads it for them; a missing mount_program is only a warning.
	r, _ = Check(realStore, "overlay", Lookup{UID: 1000, Reader: Current, Root: s.root})
	if !r.OK() || len(r.Warnings) != 1 {
		t.Errorf("rootless, Podman 6: %+v", r)
	}
	if r, _ = Check(realStore, "vfs", Lookup{UID: 0, Reader: Legacy, Root: s.root}); r.OK() {
		t.Errorf("driver mismatch not reported: %+v", r)
	}

	// A missing store listed anywhere stops Podman altogether.
	s.file("etc/containers/storage.conf", "", realStore, other)
	r, _ = Check(realStore, "overlay", Lookup{UID: 0, Reader: Legacy, Root: s.root})
	if r.OK() || !slices.Equal(r.Failures, []string{"the listed store " + other + " is missing: Podman refuses to start until it exists or is removed from the list."}) {
		t.Errorf("missing other store: %+v", r)
	}
	r, _ = Check(other, "overlay", Lookup{UID: 0, Reader: Legacy, Root: s.root})
	if r.OK() || len(r.Failures) != 1 || !strings.Contains(r.Failures[0], "no such file") {
		t.Errorf("missing store: %+v", r)
	}
}

// conf check says "Podman will fail" for every configuration that makes Podman fail on every
// command, not only for a missing store.
func TestCheckPodmanWillFail(t *testing.T) {
	realStore := t.TempDir()
	tests := []struct {
		name  string
		uid   int
		setUp func(s *sandbox, home string) // home: the user's
		fails string                        // a failure saying this; "": none
	}{
		{name: "rootless, storage and file agree", uid: 1000, setUp: func(s *sandbox, home string) {
			madeWith(t, home, "overlay")
			s.file("~/.config/containers/storage.conf", "", realStore)
		}},
		{name: "rootless vfs storage, overlay file", uid: 1000, setUp: func(s *sandbox, home string) {
			madeWith(t, home, "vfs")
			s.file("~/.config/containers/storage.conf", "", realStore)
		}, fails: `made with the vfs driver, which Podman keeps whatever storage.conf says; it then fails on the configuration's overlay options (Podman 4.3 and 5.4: "vfs driver does not support overlay.imagestore options"`},
		{name: "rootless vfs storage, overlay file without options", uid: 1000, setUp: func(s *sandbox, home string) {
			madeWith(t, home, "vfs")
			writeFile(t, home, ".config/containers/storage.conf", []byte("[storage]\ndriver = \"overlay\"\n"), 0o644)
		}},
		{name: "mount program missing", uid: 1000, setUp: func(s *sandbox, home string) {
			s.file("~/.config/containers/storage.conf", "", realStore)
			f := filepath.Join(home, ".config/containers/storage.conf")
			writeFile(t, filepath.Dir(f), "storage.conf", append(readFile(t, f), "[storage.options.overlay]\nmount_program = \"/nonexistent/fuse-overlayfs\"\n"...), 0o644)
		}, fails: "the mount_program /nonexistent/fuse-overlayfs cannot be run"},
		{name: "rootful without runroot", setUp: func(s *sandbox, home string) {
			writeFile(t, s.root, "etc/containers/storage.conf", []byte("[storage]\ndriver = \"overlay\"\n[storage.options]\nadditionalimagestores = ["+quote(realStore)+"]\n"), 0o644)
		}, fails: `sets no runroot and graphroot: rootful Podman up to 5.x fails on every command ("runroot must be set")`},
		{name: "rootful overlay storage, vfs file", setUp: func(s *sandbox, home string) {
			setUp(t, os.MkdirAll(filepath.Join(s.root, "var/lib/containers/storage/overlay-layers"), 0o700))
			s.file("etc/containers/storage.conf", "", realStore)
			f := filepath.Join(s.root, "etc/containers/storage.conf")
			writeFile(t, filepath.Dir(f), "storage.conf", bytes.Replace(readFile(t, f), []byte(`"overlay"`), []byte(`"vfs"`), 1), 0o644)
		}, fails: "made with the overlay driver"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSandbox(t)
			tt.setUp(s, s.home)
			r, err := Check(realStore, "overlay", Lookup{UID: tt.uid, Reader: Legacy, Root: s.root})
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(r.Failures, "\n")
			if tt.fails == "" && got != "" || !strings.Contains(got, tt.fails) || r.OK() != (tt.fails == "" && r.Listed) {
				t.Errorf("failures %q, want one saying %q (%+v)", got, tt.fails, r)
			}
		})
	}
}

// madeWith leaves in home the Podman storage of a rootless user whose Podman ran with driver.
func madeWith(t *testing.T, home, driver string) {
	t.Helper()
	setUp(t, os.MkdirAll(filepath.Join(home, ".local/share/containers/storage", driver+"-layers"), 0o700))
}

// Root looking at another user's configuration: their files, not the process's environment; their
// groups decide whether they may read the store.
func TestCheckForAnotherUser(t *testing.T) {
	s := newSandbox(t)
	home := t.TempDir()
	storeDir := filepath.Join(t.TempDir(), "store")
	// t.TempDir() is DIR/TestName.../001, both 0700: only the store's own mode is to count.
	for _, dir := range []string{filepath.Dir(storeDir), filepath.Dir(filepath.Dir(storeDir))} {
		setUp(t, os.Chmod(dir, 0o755))
	}
	setUp(t, os.Mkdir(storeDir, 0o750)) // group: this process's
	t.Setenv("CONTAINERS_STORAGE_CONF", s.file("elsewhere/storage.conf", "", "/env-store"))
	writeFile(t, home, ".config/containers/storage.conf", []byte("[storage]\ndriver = \"overlay\"\n[storage.options]\nadditionalimagestores = ["+quote(storeDir)+"]\n"), 0o644)
	l := Lookup{UID: 4321, Reader: Legacy, Root: s.root, Home: home, Name: "alice", GIDs: []int{4321}}
	r, err := Check(storeDir, "overlay", l)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Listed || r.Files[0] != filepath.Join(home, ".config/containers/storage.conf") {
		t.Errorf("not alice's file: %+v", r.Effective)
	}
	if r.OK() || !strings.Contains(strings.Join(r.Problems, " "), "this user cannot read") {
		t.Errorf("alice is not in the store's group but may read it: %+v", r)
	}
	l.GIDs = append(l.GIDs, os.Getegid())
	if r, _ = Check(storeDir, "overlay", l); !r.OK() {
		t.Errorf("alice is in the store's group: %+v", r)
	}
	if r.GraphRoot != filepath.Join(home, ".local/share/containers/storage") {
		t.Errorf("graph root %s", r.GraphRoot)
	}
}

func TestReaderFor(t *testing.T) {
	for v, want := range map[string]Reader{"4.3.1": Legacy, "5.8.0": Legacy, "6.0.0": Current, "10.1": Current, "": Legacy} {
		t.Run(v, func(t *testing.T) {
			if got := ReaderFor(v); got != want {
				t.Errorf("ReaderFor(%q) = %v", v, got)
			}
		})
	}
}
