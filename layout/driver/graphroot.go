package driver

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// A Podman graph root (a user's or a node's own storage, not a cargohold store) remembers the driver
// it was made with: libpod's database records it when Podman first runs, and that recorded driver
// wins over whatever storage.conf says later (Podman then hands the other driver's options to it and
// fails: "vfs driver does not support overlay.imagestore options"). containers-storage leaves the
// same fact on disk as the <driver>-layers directory it creates for the driver it runs with.

// PodmanStorage is what a Podman graph root holds, as far as the driver it must be read with goes.
type PodmanStorage struct {
	Dir string
	// Drivers are the graph drivers whose records are in Dir (each <driver>-layers/), sorted. One
	// driver: the one Podman recorded. None: storage not made yet (when Database is "" too).
	Drivers []string
	// Database is libpod's database (libpod/bolt_state.db up to Podman 4.x, db.sql from 5.x; measured
	// with 4.3, 5.4 and 5.8), "" if there is none.
	Database string
	// MountProgram is overlay's record of how its layers were made (overlay/.has-mount-program):
	// "true" with a mount program (fuse-overlayfs), "false" with the kernel's overlay, "" unknown.
	MountProgram string
}

// Fresh reports whether Podman has not made this storage yet: its first run records any driver.
func (p PodmanStorage) Fresh() bool { return len(p.Drivers) == 0 && p.Database == "" }

// Driver is the driver Podman recorded for this storage; "" when it cannot be told (fresh storage,
// records of several drivers, a database without records).
func (p PodmanStorage) Driver() string {
	if len(p.Drivers) == 1 {
		return p.Drivers[0]
	}
	return ""
}

// podmanDatabases are where libpod keeps its database in a graph root: BoltDB in its static dir
// (libpod/), SQLite at the top.
var podmanDatabases = []string{"libpod/bolt_state.db", "db.sql"}

// ReadPodmanStorage looks at the Podman graph root dir without changing anything. A missing dir is
// fresh storage.
func ReadPodmanStorage(dir string) (PodmanStorage, error) {
	p := PodmanStorage{Dir: dir}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return p, nil
	} else if err != nil {
		return p, err
	}
	for _, e := range entries {
		if d, ok := strings.CutSuffix(e.Name(), "-layers"); ok && d != "" && e.IsDir() {
			p.Drivers = append(p.Drivers, d)
		}
	}
	slices.Sort(p.Drivers)
	for _, db := range podmanDatabases {
		if _, err := os.Lstat(filepath.Join(dir, db)); err == nil {
			p.Database = filepath.Join(dir, db)
			break
		}
	}
	flag, err := os.ReadFile(filepath.Join(dir, string(Overlay), ".has-mount-program"))
	if err == nil {
		p.MountProgram = strings.TrimSpace(string(flag))
	}
	return p, nil
}
