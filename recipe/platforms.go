package recipe

import (
	"fmt"
	"strings"

	"github.com/cargohold/cargohold/internal/platform"
)

// A name points to one image in a store, so the images of several platforms cannot share a tag in
// one store. cargohold gives each platform its own store, by a path template such as
// "/srv/images/{arch}", and each node names the store of its own architecture in storage.conf
// (`cargohold conf snippet --store '/srv/images/{arch}'` prints the right one on each node).

// Placeholders of a store path.
const (
	placeholderOS       = "{os}"
	placeholderArch     = "{arch}"
	placeholderVariant  = "{variant}"
	placeholderPlatform = "{platform}" // os-arch or os-arch-variant
)

// PlatformList is what an image with these (effective) settings is published for: its platforms
// (or platform); a single "" (this host's platform) when none is set.
func (s Settings) PlatformList() []string {
	switch {
	case len(s.Platforms) > 0:
		return s.Platforms
	case s.Platform != "":
		return []string{s.Platform}
	}
	return []string{""}
}

// IsStoreTemplate says whether a store path names a platform part.
func IsStoreTemplate(store string) bool {
	for _, p := range []string{placeholderOS, placeholderArch, placeholderVariant, placeholderPlatform} {
		if strings.Contains(store, p) {
			return true
		}
	}
	return false
}

// StorePath expands a store path template for the platform name ("os/arch[/variant]"; "" is this host's).
// A path without placeholders is returned as it is.
func StorePath(template, name string) (string, error) {
	if !IsStoreTemplate(template) {
		return template, nil
	}
	p := platform.Host()
	if name != "" {
		var err error
		if p, err = platform.Parse(name); err != nil {
			return "", err
		}
	}
	osName, arch, variant := p.OS, p.Arch, p.Variant
	if strings.Contains(template, placeholderVariant) && variant == "" {
		return "", fmt.Errorf("store %q names {variant}, but platform %q has none", template, name)
	}
	full := osName + "-" + arch
	if variant != "" {
		full += "-" + variant
	}
	return strings.NewReplacer(placeholderOS, osName, placeholderArch, arch, placeholderVariant, variant,
		placeholderPlatform, full).Replace(template), nil
}
