// Package platform reads the "os/arch[/variant]" platform strings of flags and recipes, for the
// builder (which instance of an image to fetch) and the recipe (which store a platform goes to).
package platform

import (
	"fmt"
	"runtime"
	"strings"
)

// Platform is an image platform as an OCI image index names it.
type Platform struct {
	OS, Arch, Variant string
}

// Parse reads "os/arch" or "os/arch/variant".
func Parse(s string) (Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" || (len(parts) == 3 && parts[2] == "") {
		return Platform{}, fmt.Errorf("platform %q: want os/arch or os/arch/variant, e.g. linux/arm64/v8", s)
	}
	p := Platform{OS: parts[0], Arch: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

// Host is the platform this binary runs on (without a variant: Go does not say it).
func Host() Platform { return Platform{OS: runtime.GOOS, Arch: runtime.GOARCH} }

// String is the "os/arch[/variant]" form Parse reads.
func (p Platform) String() string {
	s := p.OS + "/" + p.Arch
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// Matches says whether an image of platform found serves a request for p: the same OS and
// architecture, and the same variant when both name one (arm64 images often omit "v8").
func (p Platform) Matches(found Platform) bool {
	return p.OS == found.OS && p.Arch == found.Arch &&
		(p.Variant == "" || found.Variant == "" || p.Variant == found.Variant)
}
