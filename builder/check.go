package builder

import (
	"fmt"
	"os"
	"slices"

	"github.com/cargohold/cargohold/internal/platform"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/types"
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
	if r.Options.Creds != "" {
		if _, _, err := splitCreds(r.Options.Creds); err != nil {
			return err
		}
	}
	if d := r.Options.CertDir; d != "" {
		if _, err := os.ReadDir(d); err != nil {
			return fmt.Errorf("--cert-dir: %w", err)
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

// Claims lists the names the request's image will have in the store, as far as they are known
// without network access, normalised as the store records them ("site/bb:stable" is
// "docker.io/site/bb:stable"): the reference's own name and the extra names. A short name claims
// every name registries.conf may resolve it to (an alias, or one per unqualified-search
// registry); a reference of a transport that carries no name (oci:DIR) claims only its extra
// names. The request must have passed Check.
func (r Request) Claims() []string {
	var names []string
	for _, own := range r.ownNames() {
		names = appendNew(names, reference.TagNameOnly(own).String())
	}
	for _, e := range r.Names {
		if named, err := parseName(e); err == nil {
			names = appendNew(names, named.String())
		}
	}
	return names
}

// ownNames are the names the reference itself may give the image: those of the candidates
// resolve would try.
func (r Request) ownNames() []reference.Named {
	ref, err := parseImageRef(r.Ref)
	if err != nil {
		return nil
	}
	opts := Options{}
	if r.Options != nil {
		opts = *r.Options
	}
	sys, err := opts.systemContext()
	if err != nil {
		return nil
	}
	disabled := types.ShortNameModeDisabled // all candidates, and never a prompt
	sys.ShortNameMode = &disabled
	refs, _, err := candidates(ref, sys)
	if err != nil {
		return nil // resolving fails again when the image is published, and says why
	}
	var names []reference.Named
	for _, c := range refs {
		if named := c.DockerReference(); named != nil {
			names = append(names, named)
		}
	}
	return names
}

func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}
