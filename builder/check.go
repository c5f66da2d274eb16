package builder

import (
	"fmt"
	"os"
	"strings"

	"github.com/cargohold/cargohold/internal/platform"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/transports"
	"go.podman.io/image/v5/transports/alltransports"
)

// Check finds what is wrong with a request without any network access: its reference, names,
// platform and auth file. A run checks every request first, so that a typo in a recipe stops it
// before its hooks (a CVMFS transaction) or any write.
func (r Request) Check() error {
	if err := checkRef(r.Ref); err != nil {
		return err
	}
	for _, name := range r.Names {
		if _, err := reference.ParseNormalizedNamed(name); err != nil {
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

// checkRef parses a reference as resolve will: another transport as written, else a docker
// reference, possibly a short name.
func checkRef(ref string) error {
	if transport, _, ok := strings.Cut(ref, ":"); ok && transport != docker.Transport.Name() && transports.Get(transport) != nil {
		if _, err := alltransports.ParseImageName(ref); err != nil {
			return fmt.Errorf("%s: %w", ref, err)
		}
		return nil
	}
	if _, err := reference.ParseNormalizedNamed(strings.TrimPrefix(ref, docker.Transport.Name()+"://")); err != nil {
		return fmt.Errorf("reference %q: %w", ref, err)
	}
	return nil
}
