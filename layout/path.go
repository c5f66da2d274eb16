package layout

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
)

// ResolveDir returns dir as an absolute path with every symlink in it resolved: a store reached
// through a link (or a parent that is one) is the same store as its real path, and every command
// acts on and reports that one path. Podman resolves the l/ links of an overlay store to real paths:
// checked against a path through a symlink, every link looked broken. Of a path that does not exist
// yet (a new store), the part that exists is resolved.
func ResolveDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	rest := ""
	for p := abs; ; p = filepath.Dir(p) {
		real, err := filepath.EvalSymlinks(p)
		switch {
		case err == nil:
			return filepath.Join(real, rest), nil
		case !errors.Is(err, fs.ErrNotExist):
			return "", fmt.Errorf("resolving %s: %w", dir, err)
		case p == filepath.Dir(p):
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(p), rest)
	}
}
