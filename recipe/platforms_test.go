package recipe

import (
	"runtime"
	"slices"
	"testing"
)

func TestStorePath(t *testing.T) {
	for _, tc := range []struct{ template, platform, want string }{
		{"/srv/images", "linux/arm64", "/srv/images"},
		{"/srv/images/{arch}", "linux/arm64", "/srv/images/arm64"},
		{"/srv/{os}/{arch}", "linux/amd64", "/srv/linux/amd64"},
		{"/srv/images-{platform}", "linux/arm/v7", "/srv/images-linux-arm-v7"},
		{"/srv/images-{platform}", "linux/amd64", "/srv/images-linux-amd64"},
		{"/srv/{arch}/{variant}", "linux/arm64/v8", "/srv/arm64/v8"},
		{"/srv/images/{arch}", "", "/srv/images/" + runtime.GOARCH},
	} {
		t.Run(tc.template+" for "+tc.platform, func(t *testing.T) {
			got, err := StorePath(tc.template, tc.platform)
			if err != nil || got != tc.want {
				t.Errorf("StorePath(%q, %q) = %q, %v; want %q", tc.template, tc.platform, got, err, tc.want)
			}
		})
	}
	for _, bad := range []struct{ name, template, platform string }{
		{"no variant to fill in", "/srv/{variant}", "linux/amd64"},
		{"a platform without an architecture", "/srv/{arch}", "linux"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			if got, err := StorePath(bad.template, bad.platform); err == nil {
				t.Errorf("StorePath(%q, %q) = %q, want an error", bad.template, bad.platform, got)
			}
		})
	}
}

func TestPlatformList(t *testing.T) {
	r, err := Parse(`store = "/srv/images/{arch}"
[defaults]
platforms = ["linux/amd64", "linux/arm64"]

[[image]]
ref = "a"

[[image]]
ref = "b"
platform = "linux/arm64"

[[image]]
ref = "c"
platforms = ["linux/arm/v7"]
`)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"linux/amd64", "linux/arm64"}, {"linux/arm64"}, {"linux/arm/v7"}}
	for i, img := range r.Images {
		if got := img.Over(r.Defaults).PlatformList(); !slices.Equal(got, want[i]) {
			t.Errorf("image %s: platforms %v, want %v", img.Ref, got, want[i])
		}
	}
	if got := (Image{Ref: "x"}).Over(Settings{}).PlatformList(); !slices.Equal(got, []string{""}) {
		t.Errorf("no platform anywhere: %v, want the host's", got)
	}
}
