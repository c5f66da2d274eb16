// Package driver names the containers-storage graph drivers a cargohold store can have (overlay,
// vfs) and tells which driver a Podman graph root was made with. It is the light part of layout,
// the standard library only, so that storageconf, which edits storage.conf and never writes a
// store, can speak of a store's driver with a type instead of "overlay"/"vfs" strings and still not
// import the store writer (layout, and with it the storage library's drivers, lock files and
// archive code). What each driver means on disk (its paths, its records) is layout's, which
// re-exports this type as layout.Driver. A driver named in a storage.conf or recorded by Podman
// (overlay2, btrfs, ...) stays a string: Podman knows more drivers than a store can have.
package driver

import (
	"errors"
	"fmt"
)

// Driver is the containers-storage graph driver whose on-disk format a store has. Podman reads a
// store only with the same driver as its own: overlay nodes need an overlay store, vfs nodes a vfs one.
type Driver string

const (
	// Overlay: overlay/<id>/diff holds a layer's own changes (whiteouts as 0/0 devices), stacked by
	// link/lower files and overlay/l/ symlinks; overlay-layers/, overlay-images/ hold the records.
	Overlay Driver = "overlay"
	// VFS: vfs/dir/<id> holds a layer's whole tree (its parent's copied, its own changes applied, so
	// no whiteouts), as the vfs driver stores it; vfs-layers/, vfs-images/ hold the records.
	VFS Driver = "vfs"
)

// ErrWrongDriver is wrapped by a refusal to use a store with another driver than its own: Podman
// with that driver would see none of its images (layout.ErrWrongDriver is the same error).
var ErrWrongDriver = errors.New("the store has another driver")

// Parse checks a driver name as given on the command line or in a recipe ("" is overlay).
func Parse(name string) (Driver, error) {
	switch Driver(name) {
	case "", Overlay:
		return Overlay, nil
	case VFS:
		return VFS, nil
	}
	return "", fmt.Errorf("unknown storage driver %q: cargohold writes overlay or vfs stores", name)
}
