package storageconf

import (
	"context"
	"fmt"
	"github.com/cargohold/cargohold/internal/shell"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

// Report says whether Podman will see a store, and why not.
type Report struct {
	*Effective
	Store    string
	Listed   bool     // the effective configuration names the store
	Problems []string // each one keeps Podman from using the store; empty: it will
	Warnings []string // things that may still go wrong
	Fix      string   // a command that fixes the main problem, if there is one
}

// OK reports whether Podman will see the store.
func (r *Report) OK() bool { return r.Listed && len(r.Problems) == 0 }

// Check works out whether the Podman described by l, run by the current user, will list
// the images of store (whose driver is storeDriver).
func Check(store, storeDriver string, l Lookup) (*Report, error) {
	storeDriver = driverOrDefault(storeDriver)
	if err := CheckStorePath(store); err != nil {
		return nil, err
	}
	eff, err := Resolve(l)
	if err != nil {
		return nil, err
	}
	r := &Report{Effective: eff, Store: store}
	r.Listed = slices.ContainsFunc(eff.Stores, func(s string) bool { return sameStore(s, store) })
	if !r.Listed {
		r.Problems = append(r.Problems, "the configuration does not list "+store+".")
		r.Fix = fixFor(store, l, eff)
	}
	if eff.Driver != "" && eff.Driver != storeDriver && (eff.Driver != "overlay2" || storeDriver != "overlay") {
		r.Problems = append(r.Problems, fmt.Sprintf("the driver is %s: a %s store is read only with driver = %q.", eff.Driver, storeDriver, storeDriver))
	}
	if err := CheckStoreDir(store); err != nil {
		r.Problems = append(r.Problems, err.Error()+".")
	} else if err := unix.Access(store, unix.R_OK|unix.X_OK); err != nil {
		r.Problems = append(r.Problems, fmt.Sprintf("this user cannot read %s (%v): every directory up to it needs a+rx.", store, err))
	}
	for _, s := range eff.Stores {
		if !sameStore(s, store) && CheckStoreDir(s) != nil {
			r.Problems = append(r.Problems, "the listed store "+s+" is missing: Podman refuses to start until it exists or is removed.")
		}
	}
	if l.UID != 0 && storeDriver == "overlay" && eff.MountProgram == "" && r.Listed {
		r.Warnings = append(r.Warnings, `no mount_program is set: rootless overlay mounts of a root-published store `+
			`need mount_program = "/usr/bin/fuse-overlayfs" under [storage.options.overlay] (cargohold conf user writes it).`)
	}
	return r, nil
}

// fixFor suggests the command that makes the configuration list the store.
func fixFor(store string, l Lookup, eff *Effective) string {
	q := shell.Quote(store)
	env := os.Getenv("CONTAINERS_STORAGE_CONF")
	switch {
	case env != "":
		return "cargohold conf patch --store " + q + " --file " + shell.Quote(env)
	case l.Reader == Legacy && l.UID != 0:
		return "cargohold conf user --store " + q
	case l.Reader == Legacy && len(eff.Files) > 0:
		return "cargohold conf patch --store " + q + " --file " + shell.Quote(eff.Files[0])
	case l.Reader == Legacy:
		return "cargohold conf patch --store " + q
	case l.UID != 0:
		dir, err := userConfigDir()
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
	if err != nil {
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
