package layout

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// RepairDir (check --repair) opens an existing store, reports the leftovers Open removed first and
// then Repair's fixes, and leaves the store without problems; it never makes a store of a path that
// is not one, and with NoWait refuses a store another run is writing.
func TestRepairDir(t *testing.T) {
	v := newVersions(t)
	closeStore(t, v.s)
	leftover := filepath.Join(v.dir, stagingDir, "crashed-run")
	layersJSON := filepath.Join(v.dir, "overlay-layers", "layers.json")
	if err := os.MkdirAll(leftover, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(layersJSON, 0o600); err != nil {
		t.Fatal(err)
	}

	done, err := RepairDir(t.Context(), v.dir, LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != 2 || !strings.HasPrefix(done[0], "removed ") || !strings.Contains(done[0], "crashed-run") ||
		!strings.Contains(done[1], "layers.json") {
		t.Errorf("RepairDir did %q; want the leftover removed, then layers.json's mode fixed", done)
	}
	if exists(leftover) {
		t.Error("the leftover is still there")
	}
	if fi, err := os.Stat(layersJSON); err != nil || fi.Mode().Perm()&0o044 != 0o044 {
		t.Errorf("layers.json is not readable by every reader after RepairDir: %v", err)
	}
	checkClean(t, v.dir)

	s := openStore(t, v.dir)
	if _, err := RepairDir(t.Context(), v.dir, LockOptions{NoWait: true}); !errors.Is(err, ErrLocked) ||
		!strings.Contains(err.Error(), "opening store "+v.dir) {
		t.Errorf("RepairDir of a store another run writes, with NoWait: %v; want ErrLocked naming the store", err)
	}
	closeStore(t, s)

	empty := filepath.Join(t.TempDir(), "nothing-here")
	if _, err := RepairDir(t.Context(), empty, LockOptions{}); !errors.Is(err, ErrNotStore) || exists(empty) {
		t.Errorf("RepairDir of a path that is no store: %v (created: %v); want ErrNotStore and nothing created", err, exists(empty))
	}
}
