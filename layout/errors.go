package layout

// Minimal declarations of the store-identity contract (COMMON.md) so that the CLI compiles against
// it; the identity branch owns and replaces this file.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

var (
	// ErrNotStore is wrapped by the error for a path that is not a cargohold store.
	ErrNotStore = errors.New("not a cargohold store")
	// ErrNewerFormat: the store was written by a newer cargohold, whose format this one does not know.
	ErrNewerFormat = errors.New("the store has a newer format than this cargohold knows")
	// ErrNotPrivileged: writing a store needs root (or the capabilities to set owners and xattrs).
	ErrNotPrivileged = errors.New("writing a store needs root")
)

// Identify returns the driver of the cargohold store at dir, or an error wrapping ErrNotStore.
func Identify(dir string) (Driver, error) {
	if _, err := os.Stat(filepath.Join(dir, privateDir)); err != nil {
		return "", fmt.Errorf("%s: %w (no %s/)", dir, ErrNotStore, privateDir)
	}
	d, err := DetectDriver(os.DirFS(dir))
	if err != nil {
		return "", err
	}
	if d == "" {
		d = Overlay
	}
	return d, nil
}
