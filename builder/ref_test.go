package builder

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestParseImageRef(t *testing.T) {
	const digest = "sha256:0123456789012345678901234567890123456789012345678901234567890123"
	dir := t.TempDir()
	for _, tt := range []struct {
		name, input string
		other       string // the other transport's name; "" for a docker reference
		dockerName  string // what registries.conf is asked about
		normalised  string
		pinned      bool
		err         string // in the error; "" for none
	}{
		{"a short name", "alpine", "", "alpine", "docker.io/library/alpine", false, ""},
		{"a short name with a tag", "alpine:3.20", "", "alpine:3.20", "docker.io/library/alpine:3.20", false, ""},
		{"docker:// is the default transport", "docker://registry.example/team/app:1", "", "registry.example/team/app:1", "registry.example/team/app:1", false, ""},
		{"without docker://", "registry.example/team/app:1", "", "registry.example/team/app:1", "registry.example/team/app:1", false, ""},
		{"a registry with a port is no transport", "localhost:5000/app:1", "", "localhost:5000/app:1", "localhost:5000/app:1", false, ""},
		{"pinned by digest", "registry.example/app@" + digest, "", "registry.example/app@" + digest, "registry.example/app@" + digest, true, ""},
		{"pinned, through docker://", "docker://registry.example/app@" + digest, "", "registry.example/app@" + digest, "registry.example/app@" + digest, true, ""},
		{"a short name by digest is not pinned: registries.conf decides", "alpine@" + digest, "", "alpine@" + digest, "docker.io/library/alpine@" + digest, false, ""},
		{"docker.io without library/ is not pinned either", "docker.io/alpine@" + digest, "", "docker.io/alpine@" + digest, "docker.io/library/alpine@" + digest, false, ""},
		{"an OCI layout", "oci:" + dir + ":app", "oci", "", "", false, ""},
		{"a docker archive", "docker-archive:" + filepath.Join(dir, "x.tar"), "docker-archive", "", "", false, ""},
		{"upper case", "Alpine:3.20", "", "", "", false, `reference "Alpine:3.20": invalid reference format: repository name must be lowercase`},
		{"a space in the tag", "registry.example/app:bad tag", "", "", "", false, `reference "registry.example/app:bad tag": invalid reference format`},
		{"malformed", "Not/A:Ref:", "", "", "", false, `reference "Not/A:Ref:"`},
		{"a bad reference of another transport", "oci:" + dir + ":Bad Tag", "", "", "", false, "oci:" + dir + ":Bad Tag: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ref, err := parseImageRef(tt.input)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("parseImageRef(%q) = %v, want an error containing %q", tt.input, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseImageRef(%q): %v", tt.input, err)
			}
			if tt.other != "" {
				if ref.other == nil || ref.other.Transport().Name() != tt.other {
					t.Errorf("parseImageRef(%q) = %+v, want a %s reference", tt.input, ref, tt.other)
				}
				if _, ok := ref.pinned(); ok {
					t.Errorf("parseImageRef(%q) is pinned", tt.input)
				}
				return
			}
			if ref.other != nil || ref.name != tt.dockerName || ref.named.String() != tt.normalised {
				t.Errorf("parseImageRef(%q) = name %q, normalised %v, other %v; want %q, %q", tt.input, ref.name, ref.named, ref.other, tt.dockerName, tt.normalised)
			}
			if c, ok := ref.pinned(); ok != tt.pinned || (ok && c.Digest().String() != digest) {
				t.Errorf("parseImageRef(%q).pinned() = %v, %v; want pinned %v", tt.input, c, ok, tt.pinned)
			}
		})
	}
}

func TestParseName(t *testing.T) {
	for _, tt := range []struct{ name, input, want, err string }{
		{"a short name gets docker.io/library/ and :latest", "alpine", "docker.io/library/alpine:latest", ""},
		{"a tag is kept", "site/app:stable", "docker.io/site/app:stable", ""},
		{"a registry is kept", "registry.example/app:1", "registry.example/app:1", ""},
		{"upper case", "site/App:x", "", "repository name must be lowercase"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			named, err := parseName(tt.input)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("parseName(%q) = %v, %v; want an error containing %q", tt.input, named, err, tt.err)
				}
				return
			}
			if err != nil || named.String() != tt.want {
				t.Errorf("parseName(%q) = %v, %v; want %s", tt.input, named, err, tt.want)
			}
		})
	}
}
