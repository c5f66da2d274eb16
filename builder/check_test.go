package builder

import (
	"os"
	"path/filepath"
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
