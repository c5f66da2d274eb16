package storageconf

import (
	"errors"
	"fmt"

	"github.com/cargohold/cargohold/internal/errkind"
	"github.com/cargohold/cargohold/layout/driver"
)

// ErrInvalid is wrapped by a refusal of what a conf command was asked for, before anything is read
// or written: a store path Podman cannot use, an unknown driver, a path that is not a store to
// register, a user that does not exist, a file that is not root's to write.
var ErrInvalid = errors.New("invalid request")

// invalid marks err as ErrInvalid, keeping its text.
func invalid(err error) error { return errkind.With(ErrInvalid, err) }

// StoreRequest is the store a conf command was given, what is at that path, and what the command
// does with it.
type StoreRequest struct {
	Store    string        // absolute, symlinks resolved (layout.ResolveDir): one spelling per store
	Driver   string        // as given (conf --driver); "" for the store's own
	Found    driver.Driver // the store's own driver (layout.Identify)
	NotStore error         // why Store is not a cargohold store (layout.Identify's error); nil if it is one
	// Registers: the command adds the store to a file. Podman fails altogether while a listed store
	// is missing, and would write its own files into a foreign directory.
	Registers    bool
	Remove       bool // the command takes the store out: any path and driver will do
	AllowMissing bool // register a path that is not a store (yet) anyway
}

// Target is the store a conf command names in storage.conf, with the driver Podman must use for it.
type Target struct {
	Store  string
	Driver driver.Driver
	// Warning says why Store is not a cargohold store, when the command goes on anyway.
	Warning error
}

// Target decides the driver (the one asked for, else the store's own, else overlay) and whether the
// command may go on: a path that is not a store is refused for registering (ErrInvalid), unless
// AllowMissing, and only a warning otherwise; a driver other than the store's own is refused
// (driver.ErrWrongDriver) except for a removal: read with the other driver a store shows nothing,
// and Podman 5.8 then writes its own directories into it.
func (r StoreRequest) Target() (Target, error) {
	if err := CheckStorePath(r.Store); err != nil {
		return Target{}, invalid(err)
	}
	found, notStore := r.Found, r.NotStore
	if err := CheckStoreDir(r.Store); err != nil {
		notStore = err // "no such file or directory" says more than "not a cargohold store"
	}
	if notStore != nil || found == "" {
		found = driver.Overlay
	}
	t := Target{Store: r.Store, Driver: found}
	if r.Driver != "" {
		d, err := driver.Parse(r.Driver)
		if err != nil {
			return Target{}, invalid(err)
		}
		t.Driver = d
	}
	if notStore == nil && t.Driver != found && !r.Remove {
		return Target{}, fmt.Errorf("%s is a %s store; Podman with driver %q cannot read it (leave --driver out): %w",
			r.Store, found, t.Driver, driver.ErrWrongDriver)
	}
	switch {
	case notStore == nil, r.Remove, r.AllowMissing:
	case r.Registers:
		return Target{}, invalid(fmt.Errorf("%w; give --allow-missing-store to register it anyway", notStore))
	default:
		t.Warning = notStore
	}
	return t, nil
}
