package builder

import (
	"fmt"
	"strings"

	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/transports"
	"go.podman.io/image/v5/transports/alltransports"
	"go.podman.io/image/v5/types"
)

// imageRef is what a user typed to name an image, parsed: the one place that reads a Request's
// Ref. Check validates with it, resolve asks it for the references to try, and Publish asks it
// whether it is pinned by digest.
//
//	"docker://reg/x:1", "reg/x:1"       a docker reference
//	"alpine", "alpine:3.20"             a short name, resolved through registries.conf
//	"reg/x@sha256:…"                    a docker reference pinned by digest
//	"oci:/dir:tag", "docker-archive:…"  another transport of containers/image, taken as written
//
// Anything before the first ":" that is not a known transport ("reg:5000/x", "alpine:3.20") is
// part of a docker reference.
type imageRef struct {
	// other is the reference of another transport than docker; nil for a docker reference.
	other types.ImageReference
	// name is a docker reference as typed, without "docker://"; named is it normalised
	// ("alpine" → "docker.io/library/alpine").
	name  string
	named reference.Named
}

// parseImageRef parses what the user typed; its error names the input.
func parseImageRef(input string) (imageRef, error) {
	if transport, _, ok := strings.Cut(input, ":"); ok && transport != docker.Transport.Name() && transports.Get(transport) != nil {
		other, err := alltransports.ParseImageName(input)
		if err != nil {
			return imageRef{}, fmt.Errorf("%s: %w", input, err)
		}
		return imageRef{other: other}, nil
	}
	name := strings.TrimPrefix(input, docker.Transport.Name()+"://")
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return imageRef{}, fmt.Errorf("reference %q: %w", input, err)
	}
	return imageRef{name: name, named: named}, nil
}

// pinned is the digest of a fully qualified docker reference by digest ("registry/name@sha256:…"):
// content that cannot change, whichever registries.conf. A short name ("alpine@sha256:…") is not
// pinned: registries.conf decides where it comes from.
func (r imageRef) pinned() (reference.Canonical, bool) {
	if r.other != nil || r.named.String() != r.name {
		return nil, false
	}
	c, ok := r.named.(reference.Canonical)
	return c, ok
}

// parseName parses an extra name for an image in the store ("site/app:stable"), normalised as
// Podman records names: "alpine" → "docker.io/library/alpine:latest".
func parseName(name string) (reference.Named, error) {
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return nil, err
	}
	return reference.TagNameOnly(named), nil
}
