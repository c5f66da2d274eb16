package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cargohold/cargohold/internal/testenv"
)

// TestList: each field a container could tell apart shows in a path's line.
func TestList(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "a file")
	if err := os.WriteFile(f, []byte("x"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(f, filepath.Join(dir, "hard")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a file", filepath.Join(dir, "link\n")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(f, "user.k", []byte{0, 1}, 0); err != nil {
		testenv.Missing(t, "user xattrs in %s: %v", dir, err)
	}
	// (unix.Chmod: os.Chmod takes setuid as os.ModeSetuid, not 0o4000)
	if err := unix.Chmod(f, 0o4750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o751); err != nil {
		t.Fatal(err)
	}
	when := unix.NsecToTimespec(1_000_000_000_123)
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, f, []unix.Timespec{when, when}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatal(err)
	}
	unpackedAfter = 0
	lines, err := list(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(lines, "\n")
	sum := "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881" // sha256("x")
	uid := os.Getuid()
	gid := os.Getgid()
	for _, want := range []string{
		`"." dir 0751 ` + strconv.Itoa(uid) + ":" + strconv.Itoa(gid) + " - - - - - - -",
		`"a file" file 4750 ` + strconv.Itoa(uid) + ":" + strconv.Itoa(gid) + " 1 1000.000000123 2 - - " + sum + " user.k=0001",
		`"hard" file 4750 `,
		`"link\n" symlink 0777 `,
		`1 - "a file" - -`,
		`"fifo" fifo 0600 `,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in\n%s", want, got)
		}
	}

	// -unpacked-after hides the mtimes from then on (here: every one).
	unpackedAfter = 1
	defer func() { unpackedAfter = 0 }()
	lines, err = list(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(lines, "\n"), `"fifo" fifo 0600 `+strconv.Itoa(uid)+":"+strconv.Itoa(gid)+" - unpacked ") {
		t.Errorf("fifo's mtime not shown as unpacked:\n%s", strings.Join(lines, "\n"))
	}
}
