package builder

import (
	"context"
	"fmt"
	"strings"

	"github.com/cargohold/cargohold/internal/platform"
	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/types"
)

// A store holds the images of one platform (recipe.StorePath), so an image of another platform
// must fail for that store instead of landing in it under another architecture's name.

// wanted is the platform the request asks for; ok is false when it names none (any will do).
func wanted(sys *types.SystemContext) (platform.Platform, bool) {
	p := platform.Platform{OS: sys.OSChoice, Arch: sys.ArchitectureChoice, Variant: sys.VariantChoice}
	return p, p.OS != "" || p.Arch != ""
}

// chooseInstance picks the requested platform's image from an image index; when the index has none,
// the error lists what it has.
func chooseInstance(list manifest.List, sys *types.SystemContext) (digest.Digest, error) {
	chosen, err := list.ChooseInstance(sys)
	if err == nil {
		return chosen, nil
	}
	want, ok := wanted(sys)
	if !ok {
		return "", err
	}
	return "", fmt.Errorf("the image index has no %s image (it has %s)", want, indexPlatforms(list))
}

// indexPlatforms lists the platforms of an image index, "linux/amd64, linux/arm64/v8".
func indexPlatforms(list manifest.List) string {
	var names []string
	for _, d := range list.Instances() {
		info, err := list.Instance(d)
		if err != nil || info.ReadOnly.Platform == nil {
			continue
		}
		p := info.ReadOnly.Platform
		names = append(names, platform.Platform{OS: p.OS, Arch: p.Architecture, Variant: p.Variant}.String())
	}
	if len(names) == 0 {
		return "no platforms listed"
	}
	return strings.Join(names, ", ")
}

// checkPlatform refuses a single-platform image whose config names another platform than the
// requested one: containers/image takes such an image as it is, whatever was asked for.
func checkPlatform(ctx context.Context, img types.Image, sys *types.SystemContext) error {
	want, ok := wanted(sys)
	if !ok {
		return nil
	}
	info, err := img.Inspect(ctx)
	if err != nil {
		return fmt.Errorf("reading the image's platform: %w", err)
	}
	found := platform.Platform{OS: info.Os, Arch: info.Architecture, Variant: info.Variant}
	if !want.Matches(found) {
		return fmt.Errorf("the image is %s, not the wanted %s (a single-platform image); it is not published into the %s store",
			found, want, want)
	}
	return nil
}
