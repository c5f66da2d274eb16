package unpack_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cargohold/cargohold/internal/testenv"
	"github.com/cargohold/cargohold/internal/testimage"
	"github.com/cargohold/cargohold/layout"
	"golang.org/x/sys/unix"
)

// A small file with candidates is linked or written on a goroutine of its own, and nothing is at its
// name until that is done (linknow.go): later entries of the layer that meet the name (the same path
// spelled otherwise, a path through a symlink, a directory below it) must still find what they would
// without sharing: the later entry wins.
func TestHardlinkSmallFilesUnderWayMeetLaterEntries(t *testing.T) {
	testenv.RequireRoot(t)
	s := openShareStore(t, t.TempDir(), layout.DedupHardlink)
	bodies := []string{"one\n", "two\n", "three\n", "four\n"}
	var cands []testimage.Entry
	for i, b := range bodies {
		cands = append(cands, testimage.File("cand"+string(rune('1'+i)), 0o644, b))
	}
	a, _ := publishLayer(t, s, "", cands...)
	b, _ := publishLayer(t, s, "",
		testimage.File("/dup", 0o644, "one\n"), testimage.Dir("dup/", 0o711), testimage.File("dup/inside", 0o644, "in\n"),
		testimage.Dir("d/", 0o755), testimage.Symlink("l", "d"),
		testimage.File("d/g", 0o644, "two\n"), testimage.File("l/g", 0o600, "through the link\n"),
		testimage.File("l/m", 0o644, "three\n"), testimage.File("d/m", 0o640, "its own\n"),
		testimage.File("h", 0o644, "three\n"), testimage.Symlink("/h", "d"),
		testimage.File("kept", 0o644, "four\n"),
	)
	da, db := diffDir(t, s, a), diffDir(t, s, b)
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(db, "dup"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Mode&0o7777 != 0o711 {
		t.Errorf("dup: mode %o (err %v), want the later directory entry's, 0711", st.Mode, err)
	}
	for name, want := range map[string]struct {
		body string
		mode uint32
	}{"dup/inside": {"in\n", 0o644}, "d/g": {"through the link\n", 0o600}, "d/m": {"its own\n", 0o640}} {
		got := stat(t, filepath.Join(db, name))
		data, err := os.ReadFile(filepath.Join(db, name))
		if err != nil || string(data) != want.body || got.mode != want.mode || got.nlink != 1 {
			t.Errorf("%s: %q, mode %o, %d links (err %v); want the later entry's %q, mode %o, 1 link", name, data, got.mode, got.nlink, err, want.body, want.mode)
		}
	}
	if target, err := os.Readlink(filepath.Join(db, "h")); err != nil || target != "d" {
		t.Errorf("h -> %q (err %v), want the later symlink entry's d", target, err)
	}
	if got, want := stat(t, filepath.Join(db, "kept")), stat(t, filepath.Join(da, "cand4")); got.ino != want.ino || got.nlink != 2 {
		t.Errorf("kept: inode %d with %d links, want a's cand4 (inode %d) with 2", got.ino, got.nlink, want.ino)
	}

	// A file, then a path below it: an error, as without sharing, whichever comes first.
	for _, dedup := range []layout.Dedup{layout.DedupOff, layout.DedupHardlink} {
		s := openShareStore(t, t.TempDir(), dedup)
		publishLayer(t, s, "", cands...)
		_, _, err := stageLayer(s, "", []testimage.Entry{testimage.File("p", 0o644, "one\n"), testimage.File("p/x", 0o644, "x\n")})
		if err == nil || !strings.Contains(err.Error(), `"p/x"`) || !strings.Contains(err.Error(), "not a directory") {
			t.Errorf("--dedup %s: a file below the file p: error %v, want one naming p/x: not a directory", dedup, err)
		}
	}
}
