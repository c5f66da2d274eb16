package storageconf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/BurntSushi/toml"

	"github.com/cargohold/cargohold/layout/driver"
)

// Where containers/storage looks for the system-wide file.
const (
	// SystemFile is the administrator's file; when it exists it replaces DistributionFile.
	SystemFile = "/etc/containers/storage.conf"
	// DistributionFile is the distribution's default (Debian: package containers-storage).
	DistributionFile = "/usr/share/containers/storage.conf"
)

// distributionFile is DistributionFile, except in tests.
var distributionFile = DistributionFile

// Options tune AddStore and RemoveStore.
type Options struct {
	// Driver is the store's storage driver ("": overlay); it goes into a file cargohold creates.
	Driver driver.Driver
	// Backup keeps the previous content as FILE.bak (same mode and owner) when FILE changes.
	Backup bool
	// Base is what a missing FILE starts as. Empty: a copy of DistributionFile if it exists
	// (a new /etc file replaces that one wholesale, so it must keep its settings), else a
	// minimal file with the driver and containers/storage's default graphroot and runroot.
	Base string
	// MakeDirs creates FILE's missing parent directories.
	MakeDirs bool
	// Beneath and Owner are for root writing into another user's home: no symlink below
	// Beneath is followed, and new files and directories belong to Owner.
	Beneath string
	Owner   *Owner

	template []byte // content of a missing file, instead of Base (drop-ins, user files)
	// keepOriginal: the first change of an existing file keeps its content beside it (OriginalSuffix),
	// for RemoveUserStore to put back.
	keepOriginal bool
}

// Owner is a numeric user and group.
type Owner struct{ UID, GID int }

// Result says what AddStore or RemoveStore did.
type Result struct {
	File    string   // the file (symlinks resolved)
	Changed bool     // false: the file already was as asked, and was not written
	Created bool     // the file did not exist before
	Base    string   // the file a created one was copied from ("": written from scratch)
	Backup  string   // the backup written, if any
	Stores  []string // the stores the file lists now
	Driver  string   // the file's storage driver ("" if it names none)
	// RemoveUserStore: Restored is the original the file was put back from (now removed); Deleted
	// says the file, created by cargohold, is gone.
	Restored string
	Deleted  bool
	// Notes say what else the caller should know (a decision conf user made for the user's storage).
	Notes []string
}

// DriverMismatch reports whether the file names another driver than the store's: Podman
// with that driver does not see the store.
func (r Result) DriverMismatch(storeDriver driver.Driver) bool {
	return r.Driver != "" && r.Driver != string(driverOrDefault(storeDriver))
}

// AddStore adds store to the additionalimagestores of the storage.conf file, creating the
// file if needed (see Options.Base). A second call changes nothing.
func AddStore(file, store string, opts Options) (Result, error) {
	return change(file, opts, true, func(name string, data []byte) ([]byte, bool, error) {
		return AddToText(name, data, store)
	})
}

// RemoveStore takes store out of the file's additionalimagestores. A missing file is left
// missing.
func RemoveStore(file, store string, opts Options) (Result, error) {
	return change(file, opts, false, func(name string, data []byte) ([]byte, bool, error) {
		return RemoveFromText(name, data, store)
	})
}

// Register adds the store (of driver d) to the storage.conf file the way
// `cargohold conf patch --store STORE --file FILE` does; for `publish --register`.
// A relative store path is made absolute.
func Register(file, store string, d driver.Driver) (changed bool, err error) {
	if store, err = filepath.Abs(store); err != nil {
		return false, err
	}
	if err := CheckStoreDir(store); err != nil {
		return false, err
	}
	r, err := AddStore(file, store, Options{Driver: d})
	return r.Changed, err
}

// CheckStoreDir checks that store can be registered: Podman refuses to start at all
// ("can't stat imageStore dir") while a listed overlay store is missing.
func CheckStoreDir(store string) error {
	if err := CheckStorePath(store); err != nil {
		return err
	}
	fi, err := os.Stat(store)
	if err != nil {
		return fmt.Errorf("store %s: %w (every Podman command fails while a listed store is missing)", store, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("store %s is not a directory", store)
	}
	return nil
}

func change(file string, opts Options, create bool, edit func(name string, data []byte) ([]byte, bool, error)) (Result, error) {
	t, err := openTarget(file, opts.MakeDirs && create, opts.Beneath, opts.Owner)
	if errors.Is(err, os.ErrNotExist) && !create {
		return Result{File: file}, nil // nothing to remove from
	}
	if err != nil {
		return Result{}, err
	}
	defer t.close()
	res := Result{File: t.path}
	was, err := t.read()
	if err != nil {
		return res, err
	}
	old := was
	if was == nil {
		if !create {
			return res, nil
		}
		data, base, err := opts.initial()
		if err != nil {
			return res, err
		}
		res.Created, res.Base = true, base
		old = &existing{data: data, mode: 0o644, uid: os.Geteuid(), gid: os.Getegid()}
		if opts.Owner != nil {
			old.uid, old.gid = opts.Owner.UID, opts.Owner.GID
		}
	}
	out, changed, err := edit(t.path, old.data)
	if err != nil {
		return res, err
	}
	if res.Stores, err = StoresInText(t.path, out); err != nil {
		return res, err
	}
	var conf struct{ Storage struct{ Driver string } }
	if _, err := toml.Decode(string(out), &conf); err == nil {
		res.Driver = conf.Storage.Driver
	}
	if !changed && !res.Created {
		return res, nil
	}
	res.Changed = true
	if err := opts.keep(t, was, &res); err != nil {
		return res, err
	}
	return res, t.write(t.base, out, old, was)
}

// keep writes what opts keep of the file's previous content was before it changes: FILE.bak with
// Backup, and the original beside it for conf user the first time cargohold changes it.
func (opts Options) keep(t *target, was *existing, res *Result) error {
	if was == nil {
		return nil
	}
	if opts.Backup {
		if err := t.write(t.base+".bak", was.data, was, nil); err != nil {
			return err
		}
		res.Backup = t.path + ".bak"
	}
	if !opts.keepOriginal {
		return nil
	}
	kept, err := t.readName(t.base + OriginalSuffix)
	if err != nil {
		return err
	}
	if kept != nil && !sameStoreList(kept.data, was.data) {
		return nil // stores cargohold added earlier are still there: the kept original is the one to restore
	}
	// The first change, or the kept original is stale (its stores are gone, the file was edited since).
	return t.write(t.base+OriginalSuffix, was.data, was, nil)
}

// initial returns the content of a file about to be created, and the file it came from.
func (o Options) initial() ([]byte, string, error) {
	if o.template != nil {
		return o.template, "", nil
	}
	base := o.Base
	if base == "" {
		if _, err := os.Stat(distributionFile); err == nil {
			base = distributionFile
		}
	}
	if base == "" {
		return minimalConfig(driverOrDefault(o.Driver)), "", nil
	}
	data, err := os.ReadFile(base)
	if err != nil {
		return nil, "", fmt.Errorf("base for a new file: %w", err)
	}
	return data, base, nil
}

// sameStoreList reports whether two storage.conf texts list the same stores.
func sameStoreList(a, b []byte) bool {
	sa, errA := StoresInText("", a)
	sb, errB := StoresInText("", b)
	return errA == nil && errB == nil && slices.Equal(sa, sb)
}

// driverOrDefault is the store's driver, overlay if none is given.
func driverOrDefault(d driver.Driver) driver.Driver {
	if d == "" {
		return driver.Overlay
	}
	return d
}
