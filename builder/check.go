package builder

import (
	"fmt"
	"os"

	"github.com/cargohold/cargohold/internal/platform"
)

// Check finds what is wrong with a request without any network access: its reference, names,
// platform and auth file. A run checks every request first, so that a typo in a recipe stops it
// before its hooks (a CVMFS transaction) or any write.
func (r Request) Check() error {
	if _, err := parseImageRef(r.Ref); err != nil {
		return err
	}
	for _, name := range r.Names {
		if _, err := parseName(name); err != nil {
			return fmt.Errorf("%s: name %q: %w", r.Ref, name, err)
		}
	}
	if r.Options == nil {
		return nil
	}
	if r.Options.Platform != "" {
		if _, err := platform.Parse(r.Options.Platform); err != nil {
			return fmt.Errorf("%s: %w", r.Ref, err)
		}
	}
	// containers/image ignores a missing auth file; the user meant one, so it is an error here.
	if f := r.Options.AuthFile; f != "" {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%s: auth file: %w", r.Ref, err)
		}
	}
	return nil
}
