package storageconf

import (
	"fmt"
	"strings"

	"github.com/cargohold/cargohold/internal/shell"
	"github.com/cargohold/cargohold/layout/driver"
)

// Defaults of containers/storage for rootful Podman when no file sets them.
const (
	defaultGraphRoot = "/var/lib/containers/storage"
	defaultRunRoot   = "/run/containers/storage"
)

// Snippet returns the storage.conf lines that register store, ready to paste into a file
// that has no [storage.options] table yet, with comments saying where they go.
func Snippet(store string, d driver.Driver) (string, error) {
	d, err := driver.Parse(string(d))
	if err != nil {
		return "", err
	}
	if err := CheckStorePath(store); err != nil {
		return "", err
	}
	name := string(d)
	var b strings.Builder
	b.WriteString("# Registers the cargohold store " + store + " with Podman.\n")
	b.WriteString("# Rootful: /etc/containers/storage.conf. Rootless (Podman up to 5.x): each user's\n")
	b.WriteString("# ~/.config/containers/storage.conf or $CONTAINERS_STORAGE_CONF.\n")
	b.WriteString("# If the file already has a [storage.options] table, add the path to its\n")
	b.WriteString("# additionalimagestores list instead (cargohold conf patch does that).\n")
	fmt.Fprintf(&b, "# The store is read only by Podman using driver = %q in [storage].\n", name)
	fmt.Fprintf(&b, "# Command-line equivalent: --storage-driver %s --storage-opt %s\n", name, shell.Quote(name+".imagestore="+store))
	b.WriteString("# (command-line storage options replace every driver option of storage.conf).\n")
	if d != driver.Overlay {
		// Podman's default driver is overlay: with any other it sees nothing of the store.
		b.WriteString("[storage]\n")
		b.WriteString("driver = " + quote(name) + "\n")
	}
	b.WriteString("[storage.options]\n")
	b.WriteString("additionalimagestores = [" + quote(store) + "]\n")
	return b.String(), nil
}

// DropInSnippet returns a storage.conf.d drop-in that adds store to the stores listed
// before it, instead of replacing them.
func DropInSnippet(store string) (string, error) {
	out, _, err := AddToText("drop-in", dropInTemplate(), store)
	return string(out), err
}

// minimalConfig is a new system-wide storage.conf when the distribution ships none.
func minimalConfig(d driver.Driver) []byte {
	return []byte(`# Podman storage configuration (containers-storage.conf(5)), created by cargohold.
# containers/storage reads only this file (no defaults are merged in), so it names the
# driver and the default locations itself.
[storage]
driver = ` + quote(string(d)) + `
runroot = ` + quote(defaultRunRoot) + `
graphroot = ` + quote(defaultGraphRoot) + `

[storage.options]
# Read-only image stores (cargohold publish) Podman lists and runs images from.
additionalimagestores = [
]
`)
}

// dropInTemplate is a new drop-in; {append = true} makes its list extend the lists of
// the files read before it (a plain list would replace them).
func dropInTemplate() []byte {
	return []byte(`# containers-storage.conf(5) drop-in, created by cargohold.
# {append = true} adds these stores to those of storage.conf and earlier drop-ins;
# without it this list would replace them. Podman up to 5.x does not read drop-ins.
[storage.options]
additionalimagestores = [
  {append = true},
]
`)
}
