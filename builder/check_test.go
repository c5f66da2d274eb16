package builder

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestRequestCheck(t *testing.T) {
	auth := filepath.Join(t.TempDir(), "auth.json")
	if err := os.WriteFile(auth, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		req Request
		ok  bool
	}{
		{Request{Ref: "alpine"}, true},
		{Request{Ref: "docker://registry.example/team/app:1", Names: []string{"site/app:stable"}}, true},
		{Request{Ref: "oci:" + filepath.Dir(auth) + ":app"}, true},
		{Request{Ref: "Alpine:3.20"}, false}, // upper case repository
		{Request{Ref: "registry.example/app:bad tag"}, false},
		{Request{Ref: "alpine", Names: []string{"site/App:x"}}, false},
		{Request{Ref: "alpine", Options: &Options{Platform: "linux"}}, false},
		{Request{Ref: "alpine", Options: &Options{AuthFile: auth}}, true},
		{Request{Ref: "alpine", Options: &Options{AuthFile: auth + ".missing"}}, false},
	} {
		err := tc.req.Check()
		if (err == nil) != tc.ok {
			t.Errorf("Check(%+v) = %v, want ok=%v", tc.req, err, tc.ok)
		}
	}
}

// The names a request claims are those the store will record, normalised, known before any network
// access: a short name claims what registries.conf may resolve it to.
func TestRequestClaims(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "registries.conf")
	text := "unqualified-search-registries = [\"docker.io\", \"quay.io\"]\n[aliases]\n\"tool\" = \"registry.example/lab/tool\"\n"
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := &Options{RegistriesConf: conf}
	for _, tc := range []struct {
		req  Request
		want []string
	}{
		{Request{Ref: "docker://registry.example/team/app:1", Names: []string{"site/bb:stable", "docker.io/site/bb:stable"}},
			[]string{"registry.example/team/app:1", "docker.io/site/bb:stable"}},
		{Request{Ref: "registry.example/team/app", Options: opts}, []string{"registry.example/team/app:latest"}},
		{Request{Ref: "tool:1.4", Options: opts}, []string{"registry.example/lab/tool:1.4"}},
		{Request{Ref: "lab/mytool:3.20", Options: opts}, []string{"docker.io/lab/mytool:3.20", "quay.io/lab/mytool:3.20"}},
		{Request{Ref: "oci:/some/layout:app", Names: []string{"localhost/app:1"}}, []string{"localhost/app:1"}},
	} {
		if got := tc.req.Claims(); !slices.Equal(got, tc.want) {
			t.Errorf("%s claims %v, want %v", tc.req.Ref, got, tc.want)
		}
	}
}
