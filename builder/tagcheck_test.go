package builder

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/types"
)

// The one-request check of a tag asks where registries.conf sends the image library, and leaves
// to the library what it cannot do the same way: mirrors, blocked registries, registry tokens.
func TestPullSource(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "registries.conf")
	writeFile(t, conf, `
[[registry]]
location = "plain.example:5000"
insecure = true

[[registry]]
prefix = "moved.example/team"
location = "new.example/other"
insecure = true

[[registry]]
location = "mirrored.example"
[[registry.mirror]]
location = "cache.example"

[[registry]]
location = "digest-mirrored.example"
[[registry.mirror]]
location = "cache.example"
pull-from-mirror = "digest-only"

[[registry]]
location = "blocked.example"
blocked = true
`)
	no := types.OptionalBoolUndefined
	for _, tt := range []struct {
		name, ref    string
		skipVerify   types.OptionalBool
		registryAuth string
		physical     string // "" for errNotChecked
		insecure     bool
	}{
		{"a registry registries.conf does not name", "registry.example/app:1", no, "", "registry.example/app:1", false},
		{"an insecure registry", "plain.example:5000/app:1", no, "", "plain.example:5000/app:1", true},
		{"--tls-verify=true over registries.conf's insecure", "plain.example:5000/app:1", types.OptionalBoolFalse, "", "plain.example:5000/app:1", false},
		{"--tls-verify=false", "registry.example/app:1", types.OptionalBoolTrue, "", "registry.example/app:1", true},
		{"a location put in place of a prefix", "moved.example/team/app:1", no, "", "new.example/other/app:1", true},
		{"mirrors are the library's", "mirrored.example/app:1", no, "", "", false},
		{"a digest-only mirror is not asked about a tag", "digest-mirrored.example/app:1", no, "", "digest-mirrored.example/app:1", false},
		{"a blocked registry is the library's to refuse", "blocked.example/app:1", no, "", "", false},
		{"a registry token is the library's", "registry.example/app:1", no, "token", "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			named, err := reference.ParseNormalizedNamed(tt.ref)
			if err != nil {
				t.Fatal(err)
			}
			sys := &types.SystemContext{SystemRegistriesConfPath: conf, DockerInsecureSkipTLSVerify: tt.skipVerify,
				DockerBearerRegistryToken: tt.registryAuth}
			physical, insecure, err := pullSource(named, sys)
			if tt.physical == "" {
				if !errors.Is(err, errNotChecked) {
					t.Fatalf("pullSource(%s) = %v, %v, %v; want errNotChecked", tt.ref, physical, insecure, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if physical.String() != tt.physical || insecure != tt.insecure {
				t.Errorf("pullSource(%s) = %s, insecure %v; want %s, insecure %v", tt.ref, physical, insecure, tt.physical, tt.insecure)
			}
		})
	}
}

// A tag is checked by one request only if the trust policy accepts the image without looking at
// it; a policy that wants its signatures, or rejects it, sends it the library's way, which checks
// the signatures (or says why it is rejected) as before.
func TestAcceptedUnseen(t *testing.T) {
	for _, tt := range []struct {
		name, policy string
		want         bool
	}{
		{"accept anything", `{"default": [{"type": "insecureAcceptAnything"}]}`, true},
		{"reject", `{"default": [{"type": "reject"}]}`, false},
		{"signed by a key", `{"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/nonexistent/key.gpg"}]}`, false},
		{"rejected by default, accepted for the registry", `{"default": [{"type": "reject"}],
			"transports": {"docker": {"registry.example": [{"type": "insecureAcceptAnything"}]}}}`, true},
		{"accepted by default, signed for the repository", `{"default": [{"type": "insecureAcceptAnything"}],
			"transports": {"docker": {"registry.example/app": [{"type": "sigstoreSigned", "keyPath": "/nonexistent/key.pub"}]}}}`, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "policy.json")
			writeFile(t, path, tt.policy)
			opts := Options{PolicyPath: path}
			sys, err := opts.systemContext()
			if err != nil {
				t.Fatal(err)
			}
			policy, err := opts.policyContext(sys)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = policy.Destroy() }()
			named, err := reference.ParseNormalizedNamed("registry.example/app:1")
			if err != nil {
				t.Fatal(err)
			}
			ref, err := docker.NewReference(named)
			if err != nil {
				t.Fatal(err)
			}
			if got := acceptedUnseen(context.Background(), policy, ref); got != tt.want {
				t.Errorf("acceptedUnseen = %v, want %v", got, tt.want)
			}
		})
	}
}

// The TLS files are those the image library reads: --cert-dir, else the host's directory under
// /etc/containers/certs.d or /etc/docker/certs.d.
func TestCertDir(t *testing.T) {
	if got := certDir(&types.SystemContext{DockerCertPath: "/some/dir"}, "registry.example"); got != "/some/dir" {
		t.Errorf("certDir with --cert-dir = %q", got)
	}
	if got := certDir(&types.SystemContext{}, "no-such-host.invalid:1"); got != "" {
		t.Errorf("certDir of a host without a directory = %q, want \"\"", got)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
