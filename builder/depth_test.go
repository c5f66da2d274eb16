package builder

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cargohold/cargohold/internal/testenv"
	"github.com/cargohold/cargohold/layout"
)

func TestPodman4LayerLimit(t *testing.T) {
	for _, tt := range []struct {
		name     string
		storeDir string
		want     int
	}{
		{"the measured path", "/srv/cargohold/store1", 64}, // 21 characters: Podman 4.3.1 rootless native ran 64 layers, not 65
		{"a short path", "/s", 94},
		{"a CVMFS path", "/cvmfs/images.example.org/podman/store", 49},
		{"a 200-character path", "/" + strings.Repeat("x", 199), 15},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := podman4LayerLimit(tt.storeDir); got != tt.want {
				t.Errorf("podman4LayerLimit(%q) (%d characters) = %d, want %d", tt.storeDir, len(tt.storeDir), got, tt.want)
			}
		})
	}
}

// An image deeper than Podman 4.x can mount from the store's path is published with a warning, or
// with Strict refused before anything is fetched.
func TestTooDeepForPodman4(t *testing.T) {
	testenv.RequireRoot(t)
	fx := fixtures
	// A path long enough that the limit drops below app:1's 3 layers.
	dir := t.TempDir()
	for podman4LayerLimit(filepath.Join(dir, "store")) >= 3 {
		dir = filepath.Join(dir, strings.Repeat("d", 200))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	dir = filepath.Join(dir, "store")
	store := openStoreAt(t, dir, layout.Options{})
	ref := fx.ref("app:1")
	limit := strconv.Itoa(podman4LayerLimit(dir))

	p := &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t), Strict: true}}
	res := publish(t, p, ref, "localhost/cargotest/app:1")
	if res.Err == nil || !strings.Contains(res.Err.Error(), ref) || !strings.Contains(res.Err.Error(), "3 layers") ||
		!strings.Contains(res.Err.Error(), "more than "+limit+" layers") || res.Action != Failed {
		t.Errorf("strict: %v (%s); want a refusal naming %s, its 3 layers and the limit %s", res.Err, res.Action, ref, limit)
	}
	if len(store.Images()) != 0 || res.LayersFetched != 0 {
		t.Errorf("strict: %d images, %d layers fetched; want nothing published", len(store.Images()), res.LayersFetched)
	}

	p.Options.Strict = false
	res = mustPublish(t, p, ref, "localhost/cargotest/app:1")
	if len(res.Warnings) != 1 || !strings.HasPrefix(res.Warnings[0], "the image has 3 layers") ||
		!strings.Contains(res.Warnings[0], "more than "+limit+" layers from a store at "+dir) {
		t.Errorf("warnings %q; want one naming %s, its 3 layers, the limit %s and the store path", res.Warnings, ref, limit)
	}
	if res.Action != Added {
		t.Errorf("without strict: %s, want added", res.Action)
	}
}

// Past the storage library's depth limit no Podman version runs the image, whatever the store path.
func TestDeeperThanAnyPodman(t *testing.T) {
	testenv.RequireRoot(t)
	store, _ := openStore(t)
	for _, tt := range []struct {
		name   string
		layers int
		want   string // in the warning; "" for none
	}{
		{"shallow", 3, ""},
		{"one past Podman 4's limit from this path", podman4LayerLimit(store.Dir()) + 1, "Podman 4.x cannot run"},
		{"one past the storage library's limit", maxLayers + 1, "no Podman version (4.3 to 5.8) can run"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			warning, err := checkDepth(store, tt.layers, false)
			if err != nil || !strings.Contains(warning, tt.want) || (tt.want == "") != (warning == "") {
				t.Errorf("%d layers: warning %q, error %v; want a warning saying %q", tt.layers, warning, err, tt.want)
			}
			if _, err := checkDepth(store, tt.layers, true); (err != nil) != (tt.want != "") {
				t.Errorf("%d layers, strict: error %v", tt.layers, err)
			}
		})
	}
}
