package storageconf

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"github.com/cargohold/cargohold/internal/shell"
	"github.com/cargohold/cargohold/layout/driver"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Report says whether Podman will see a store, and why not.
type Report struct {
	*Effective
	Store string
	// Storage is Podman's own storage for this user (Effective.GraphRoot): the driver it was made
	// with is the one Podman uses.
	Storage  driver.PodmanStorage
	Listed   bool     // the effective configuration names the store
	Failures []string // each one makes every podman command of this user fail
	Problems []string // each one keeps Podman from using the store; empty: it will
	Warnings []string // things that may still go wrong
	Fix      string   // a command that fixes the main problem, if there is one
}

// OK reports whether Podman will work and see the store.
func (r *Report) OK() bool { return r.Listed && len(r.Problems) == 0 && len(r.Failures) == 0 }

// Check works out whether the Podman described by l will work and list the images of store (whose
// driver is storeDriver).
func Check(store string, d driver.Driver, l Lookup) (*Report, error) {
	storeDriver := string(driverOrDefault(d))
	if err := CheckStorePath(store); err != nil {
		return nil, err
	}
	eff, err := Resolve(l)
	if err != nil {
		return nil, err
	}
	r := &Report{Effective: eff, Store: store}
	if r.Storage, err = driver.ReadPodmanStorage(eff.GraphRoot); err != nil {
		return nil, fmt.Errorf("reading Podman's storage %s: %w", eff.GraphRoot, err)
	}
	r.Listed = slices.ContainsFunc(eff.Stores, func(s string) bool { return sameStore(s, store) })
	if !r.Listed {
		r.Problems = append(r.Problems, "the configuration does not list "+store+".")
		r.Fix = fixFor(store, l, eff)
	}
	r.checkFailures(l)
	if recorded := r.Storage.Driver(); recorded != "" && !sameDriver(recorded, storeDriver) {
		r.Problems = append(r.Problems, fmt.Sprintf("Podman's storage %s was made with the %s driver, which Podman keeps: "+
			"it cannot read %s. Reset the storage first (podman system reset, as this user: removes their images and "+
			"containers), or register %s.", eff.GraphRoot, recorded, aStore(storeDriver), aStore(recorded)))
		r.Fix = "" // conf user would refuse too, for the same reason
	} else if eff.Driver != "" && !sameDriver(eff.Driver, storeDriver) {
		r.Problems = append(r.Problems, fmt.Sprintf("the driver is %s: %s is read only with driver = %q.", eff.Driver, aStore(storeDriver), storeDriver))
	}
	if err := CheckStoreDir(store); err != nil {
		if r.Listed {
			r.Failures = append(r.Failures, err.Error()+".")
		} else {
			r.Problems = append(r.Problems, err.Error()+".")
		}
	} else if err := readable(store, l); err != nil {
		r.Problems = append(r.Problems, fmt.Sprintf("this user cannot read %s (%v): every directory up to it needs a+rx.", store, err))
	}
	if l.UID != 0 && storeDriver == string(driver.Overlay) && eff.MountProgram == "" && r.Listed && r.Storage.MountProgram != "true" {
		r.Warnings = append(r.Warnings, `no mount_program is set: rootless Podman then mounts the store with the kernel's overlay, `+
			`which runs only images that have /etc/mtab and cannot enter directories only root may enter; `+
			`mount_program = "/usr/bin/fuse-overlayfs" under [storage.options.overlay] runs them all.`)
	}
	return r, nil
}

// checkFailures records what makes Podman fail on every command, whatever the store.
func (r *Report) checkFailures(l Lookup) {
	for _, s := range r.Stores {
		if !sameStore(s, r.Store) && CheckStoreDir(s) != nil {
			r.Failures = append(r.Failures, "the listed store "+s+" is missing: Podman refuses to start until it exists or is removed from the list.")
		}
	}
	if recorded := r.Storage.Driver(); recorded != "" && r.Driver != "" && !sameDriver(recorded, r.Driver) && r.DriverOptions {
		r.Failures = append(r.Failures, fmt.Sprintf("Podman's storage %s was made with the %s driver, which Podman keeps "+
			"whatever storage.conf says; it then fails on the configuration's %s options (%s). Either set driver = %q "+
			"again, or reset the storage first (podman system reset, as this user: removes their images and containers).",
			r.GraphRoot, recorded, r.Driver, optionsError(recorded, r.Driver), recorded))
	}
	if len(r.Storage.Drivers) > 1 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("Podman's storage %s holds records of several drivers (%s): "+
			"podman info --format '{{.Store.GraphDriverName}}' says which one Podman uses.", r.GraphRoot, strings.Join(r.Storage.Drivers, ", ")))
	}
	used := cmp.Or(r.Storage.Driver(), r.Driver)
	if r.MountProgram != "" && (used == "" || sameDriver(used, string(driver.Overlay))) {
		if err := unix.Access(r.MountProgram, unix.X_OK); err != nil {
			r.Failures = append(r.Failures, fmt.Sprintf("the mount_program %s cannot be run (%v): the overlay driver refuses to start.", r.MountProgram, err))
		}
	}
	if len(r.Unset) > 0 && l.Reader == Legacy {
		r.Failures = append(r.Failures, fmt.Sprintf("%s sets no %s: rootful Podman up to 5.x fails on every command (%q).",
			r.Files[0], strings.Join(r.Unset, " and "), r.Unset[0]+" must be set"))
	}
}

// optionsError is how Podman fails with the options of configured handed to the recorded driver
// (measured with 4.3, 5.4 and 5.8).
func optionsError(recorded, configured string) string {
	return fmt.Sprintf("Podman 4.3 and 5.4: %q; 5.8 looks for %s-images in the listed stores", recorded+" driver does not support "+
		configured+".imagestore options", recorded)
}

// sameDriver compares driver names as containers/storage does (overlay2 is overlay).
func sameDriver(a, b string) bool {
	norm := func(d string) string {
		if d == "overlay2" { // (a name Podman accepts in storage.conf, never a store's driver)
			return string(driver.Overlay)
		}
		return d
	}
	return norm(a) == norm(b)
}

// readable tells whether the user of l may read the directory store: for the current user, as
// the kernel says; for another user's view, by the mode bits of each directory up to it.
func readable(store string, l Lookup) error {
	if l.Home == "" {
		return unix.Access(store, unix.R_OK|unix.X_OK)
	}
	dir := store
	for {
		need := uint32(1) // search
		if dir == store {
			need = 5 // read and search
		}
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			return err
		}
		if !permits(st, l, need) {
			return fmt.Errorf("%s is mode %o, owner %d:%d", dir, st.Mode&0o777, st.Uid, st.Gid)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil
		}
		dir = parent
	}
}

// permits reports whether st's mode bits give the user of l the access need (bits of "rwx" as 4 2 1).
func permits(st unix.Stat_t, l Lookup, need uint32) bool {
	mode := st.Mode & 0o777
	switch {
	case l.UID == 0:
		return true
	case int(st.Uid) == l.UID:
		return (mode>>6)&need == need
	case slices.Contains(l.GIDs, int(st.Gid)):
		return (mode>>3)&need == need
	}
	return mode&need == need
}

// fixFor suggests the command that makes the configuration list the store.
func fixFor(store string, l Lookup, eff *Effective) string {
	q := shell.Quote(store)
	env, _ := l.getenv("CONTAINERS_STORAGE_CONF")
	forUser := ""
	if l.Home != "" {
		forUser = " --user " + shell.Quote(l.Name)
	}
	switch {
	case env != "":
		return "cargohold conf patch --store " + q + " --file " + shell.Quote(env)
	case l.Reader == Legacy && l.UID != 0:
		return "cargohold conf user --store " + q + forUser
	case l.Reader == Legacy && len(eff.Files) > 0:
		return "cargohold conf patch --store " + q + " --file " + shell.Quote(eff.Files[0])
	case l.Reader == Legacy:
		return "cargohold conf patch --store " + q
	case l.UID != 0:
		dir, err := l.configDir()
		if err != nil {
			return ""
		}
		return "cargohold conf dropin --store " + q + " --dir " + shell.Quote(filepath.Join(dir, "storage.conf.d"))
	default:
		return "cargohold conf dropin --store " + q
	}
}

// DetectReader runs `podman --version` (killed when ctx ends) and returns how that Podman reads
// storage.conf.
func DetectReader(ctx context.Context) (Reader, string, error) {
	out, err := exec.CommandContext(ctx, "podman", "--version").Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) && len(bytes.TrimSpace(exit.Stderr)) > 0 {
		// Podman up to 5.x fails even --version on a configuration it cannot use: say why.
		return Legacy, "", fmt.Errorf("podman --version: %w: %s", err, bytes.TrimSpace(exit.Stderr))
	} else if err != nil {
		return Legacy, "", fmt.Errorf("podman --version: %w", err)
	}
	m := regexp.MustCompile(`(\d+)\.(\d+)(\.\d+)?`).FindSubmatch(out)
	if m == nil {
		return Legacy, "", fmt.Errorf("podman --version printed %q: no version number", out)
	}
	return ReaderFor(string(m[0])), string(m[0]), nil
}

// ReaderFor returns how the Podman of this version ("4.3.1") reads storage.conf.
func ReaderFor(version string) Reader {
	major, _ := strconv.Atoi(regexp.MustCompile(`^\d+`).FindString(version))
	if major >= 6 {
		return Current
	}
	return Legacy
}
