package storageconf

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Drop-in locations (containers/storage with drop-in support, Podman 6+).
const (
	// DefaultDropInDir applies to every user, rootful and rootless.
	DefaultDropInDir = "/etc/containers/storage.conf.d"
	// DefaultDropInName sorts late, so that few drop-ins come after it: a later list
	// without {append = true} would replace this one.
	DefaultDropInName = "90-cargohold.conf"
)

// AddDropIn writes or updates the drop-in dir/name so that it adds store to the stores
// of storage.conf and of the drop-ins before it.
func AddDropIn(dir, name, store string, backup bool) (Result, error) {
	file, err := dropInFile(dir, name)
	if err != nil {
		return Result{}, err
	}
	opts := Options{Backup: backup, MakeDirs: true, template: dropInTemplate()}
	return change(file, opts, true, func(path string, data []byte) ([]byte, bool, error) {
		d, err := parseDoc(path, data)
		if err != nil {
			return nil, false, err
		}
		if d.list != nil && !d.appends() {
			return nil, false, fmt.Errorf("%s:%d: this list replaces the stores of storage.conf and earlier drop-ins: "+
				"add {append = true} to it, or choose another --name", path, d.list.line)
		}
		return AddToText(path, data, store)
	})
}

// RemoveDropIn takes store out of the drop-in dir/name.
func RemoveDropIn(dir, name, store string, backup bool) (Result, error) {
	file, err := dropInFile(dir, name)
	if err != nil {
		return Result{}, err
	}
	return RemoveStore(file, store, Options{Backup: backup})
}

func dropInFile(dir, name string) (string, error) {
	if !strings.HasSuffix(name, ".conf") || strings.ContainsRune(name, '/') || strings.HasPrefix(name, ".") {
		return "", fmt.Errorf("drop-in name %q: containers/storage reads only NAME.conf files in the directory", name)
	}
	return filepath.Join(dir, name), nil
}
