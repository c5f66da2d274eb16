package builder

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestRequestCheck(t *testing.T) {
	auth := filepath.Join(t.TempDir(), "auth.json")
	if err := os.WriteFile(auth, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		req  Request
		err  string // in the error; "" for none
	}{
		{"a short name", Request{Ref: "alpine"}, ""},
		{"a docker reference and a name", Request{Ref: "docker://registry.example/team/app:1", Names: []string{"site/app:stable"}}, ""},
		{"an OCI layout", Request{Ref: "oci:" + filepath.Dir(auth) + ":app"}, ""},
		{"an upper-case repository", Request{Ref: "Alpine:3.20"}, `reference "Alpine:3.20": invalid reference format: repository name must be lowercase`},
		{"a space in the tag", Request{Ref: "registry.example/app:bad tag"}, `reference "registry.example/app:bad tag"`},
		{"an upper-case name", Request{Ref: "alpine", Names: []string{"site/App:x"}}, `alpine: name "site/App:x": invalid reference format: repository name must be lowercase`},
		{"a platform without an architecture", Request{Ref: "alpine", Options: &Options{Platform: "linux"}}, "alpine: "},
		{"an auth file", Request{Ref: "alpine", Options: &Options{AuthFile: auth}}, ""},
		{"a missing auth file", Request{Ref: "alpine", Options: &Options{AuthFile: auth + ".missing"}}, "alpine: auth file: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.req.Check()
			if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("Check(%+v) = %v, want an error containing %q", tc.req, err, tc.err)
			}
		})
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
