package storageconf

import (
	"os"
	"path/filepath"
	"strings"
)

// UserOptions tune AddUserStore.
type UserOptions struct {
	Driver string // the store's driver (default overlay)
	// MountProgram goes under [storage.options.overlay] of a new overlay file ("": none).
	MountProgram string
	Backup       bool
	// For root writing another user's file: their home and IDs. Below Home no symlink is
	// followed, and what cargohold creates belongs to Owner.
	Home  string
	Owner *Owner
}

// UserFile is the storage.conf of the user with this home directory, as their Podman
// finds it without CONTAINERS_STORAGE_CONF and XDG_CONFIG_HOME.
func UserFile(home string) string {
	return filepath.Join(home, ".config", "containers", "storage.conf")
}

// AddUserStore adds store to a rootless user's storage.conf. A missing file is created
// with the driver, the store and the mount program, leaving graphroot and runroot to
// Podman's per-user defaults.
func AddUserStore(file, store string, o UserOptions) (Result, error) {
	driver := driverOrDefault(o.Driver)
	home := o.Home
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	graphRoot := filepath.Join(home, ".local", "share", "containers", "storage")
	if xdg := os.Getenv("XDG_DATA_HOME"); xdg != "" && o.Owner == nil {
		graphRoot = filepath.Join(xdg, "containers", "storage")
	}
	opts := Options{
		Driver: driver, Backup: o.Backup, MakeDirs: true, Owner: o.Owner,
		template: userTemplate(driver, o.MountProgram, graphRoot),
	}
	if o.Owner != nil && o.Home != "" && within(o.Home, file) {
		opts.Beneath = o.Home
	}
	return AddStore(file, store, opts)
}

// RemoveUserStore takes store out of a user's storage.conf.
func RemoveUserStore(file, store string, o UserOptions) (Result, error) {
	opts := Options{Backup: o.Backup}
	if o.Owner != nil && o.Home != "" && within(o.Home, file) {
		opts.Beneath, opts.Owner = o.Home, o.Owner
	}
	return RemoveStore(file, store, opts)
}

func within(dir, file string) bool {
	rel, err := filepath.Rel(dir, file)
	return err == nil && rel != "." && !strings.HasPrefix(rel, "..")
}
