package storageconf

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"
)

// CheckStorePath reports whether containers/storage can use path as an additional store.
// It only looks at the string; see CheckStoreDir for the directory itself.
func CheckStorePath(path string) error {
	switch {
	case path == "":
		return fmt.Errorf("empty store path")
	case !utf8.ValidString(path):
		return fmt.Errorf("store path %q is not valid UTF-8 (TOML files must be)", path)
	case !filepath.IsAbs(path):
		return fmt.Errorf("store path %q is not absolute (Podman resolves stores from its own working directory)", path)
	case strings.ContainsRune(path, ','):
		// containers/storage splits the imagestore= driver option at commas.
		return fmt.Errorf("store path %q contains a comma, which containers/storage reads as two paths: rename the store", path)
	case strings.IndexFunc(path, unicode.IsControl) >= 0:
		return fmt.Errorf("store path %q contains a control character", path)
	}
	return nil
}

// sameStore reports whether two store paths name the same directory: equal once cleaned, or two
// spellings of one directory (a symlink, a symlinked parent, a bind mount). containers/storage
// compares only cleaned paths, so Podman would list such a store twice: every image twice.
func sameStore(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}

// quote returns s as a TOML basic string. Control characters never get here
// (CheckStorePath refuses them), so only quotes and backslashes need escaping.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
