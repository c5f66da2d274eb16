package builder

import (
	"os"
	"path/filepath"
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
