package builder

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cargohold/cargohold/internal/testenv"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/manifest"
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
			_, policy := contextsOf(t, Options{PolicyPath: path})
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

// tokenRegistry is a registry that wants a bearer token for each repository from its token service
// (realm /token), given for user:password only, and knows one manifest per repository: the digest
// of "manifest of REPO". It counts what it is asked.
type tokenRegistry struct {
	userPassword string
	pings        atomic.Int32
	tokens       atomic.Int32
	heads        atomic.Int32
	srv          *httptest.Server
}

func newTokenRegistry(t *testing.T, userPassword string) *tokenRegistry {
	reg := &tokenRegistry{userPassword: userPassword}
	reg.srv = httptest.NewServer(http.HandlerFunc(reg.serve))
	t.Cleanup(reg.srv.Close)
	return reg
}

func (reg *tokenRegistry) serve(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/token":
		reg.tokens.Add(1)
		user, password, _ := r.BasicAuth()
		scope, ok := strings.CutPrefix(r.URL.Query().Get("scope"), "repository:")
		if user+":"+password != reg.userPassword || !ok || r.URL.Query().Get("service") != "test" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = fmt.Fprintf(w, `{"token": "token for %s", "expires_in": 300}`, scope)
		return
	case r.URL.Path == "/v2/":
		reg.pings.Add(1)
	case r.Method == http.MethodHead && strings.HasSuffix(r.URL.Path, "/manifests/1"):
		reg.heads.Add(1)
		repo := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v2/"), "/manifests/1")
		if r.Header.Get("Authorization") == "Bearer token for "+repo+":pull" &&
			slices.Equal(r.Header.Values("Accept"), manifest.DefaultRequestedManifestMIMETypes) {
			w.Header().Set("Content-Type", manifest.DockerV2Schema2MediaType)
			w.Header().Set("Docker-Content-Digest", digest.FromString("manifest of "+repo).String())
			return
		}
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="`+reg.srv.URL+`/token",service="test"`)
	w.WriteHeader(http.StatusUnauthorized)
}

// A resync's tag checks share a registry's client: one ping for the run, one token per repository,
// one HEAD per tag, with the credentials the image library finds for the repository; wrong ones
// check nothing (the library's path then says what is wrong).
func TestTagCheckTokens(t *testing.T) {
	reg := newTokenRegistry(t, "lab:s3cret")
	host := strings.TrimPrefix(reg.srv.URL, "http://")
	authFile := filepath.Join(t.TempDir(), "auth.json")
	writeFile(t, authFile, `{"auths": {"`+host+`": {"auth": "`+base64.StdEncoding.EncodeToString([]byte("lab:s3cret"))+`"}}}`)
	sys := &types.SystemContext{AuthFilePath: authFile, DockerInsecureSkipTLSVerify: types.OptionalBoolTrue}
	var tc tagChecks
	for _, repo := range []string{"team/app", "team/app", "team/tool", "team/app"} {
		named, err := reference.ParseNormalizedNamed(host + "/" + repo + ":1")
		if err != nil {
			t.Fatal(err)
		}
		ref, err := docker.NewReference(named)
		if err != nil {
			t.Fatal(err)
		}
		d, mimeType, err := tc.manifestDigest(context.Background(), ref, sys)
		if err != nil {
			t.Fatalf("%s: %v", repo, err)
		}
		if want := digest.FromString("manifest of " + repo); d != want || mimeType != manifest.DockerV2Schema2MediaType {
			t.Errorf("%s: %s %s, want %s %s", repo, d, mimeType, want, manifest.DockerV2Schema2MediaType)
		}
	}
	// https first (it fails: the server speaks HTTP), then one ping over http.
	if p, tk, h := reg.pings.Load(), reg.tokens.Load(), reg.heads.Load(); p != 1 || tk != 2 || h != 4 {
		t.Errorf("%d pings, %d token requests, %d HEADs; want 1, 2 (one per repository), 4", p, tk, h)
	}

	wrong := *sys
	wrong.DockerAuthConfig = &types.DockerAuthConfig{Username: "lab", Password: "wrong"}
	named, _ := reference.ParseNormalizedNamed(host + "/team/other:1")
	ref, _ := docker.NewReference(named)
	if d, _, err := tc.manifestDigest(context.Background(), ref, &wrong); err == nil {
		t.Errorf("wrong credentials: digest %s, want an error", d)
	}
}

// A tag naming a manifest list is unchanged only if the store's image is the instance the list
// chooses for the platform asked for now: the list the store holds chooses it, as at publish time.
func TestHeldInstanceOfAList(t *testing.T) {
	testenv.RequireRoot(t)
	fx := fixtures
	store, _ := openStore(t)
	variants := fx.platforms["multi:1"]
	const name = "localhost/cargotest/multi:held"
	p := &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t), Platform: "linux/amd64"}}
	res := mustPublish(t, p, fx.ref("multi:1"), name)
	img, ok := store.ImageWithManifest(res.ImageID, fx.indexes["multi:1"], []string{name})
	if !ok {
		t.Fatal("the published image does not hold its index")
	}
	for _, tt := range []struct {
		platform string
		held     bool
	}{{"linux/amd64", true}, {"linux/arm64", false}, {"linux/s390x", false}} {
		sys, err := Options{Platform: tt.platform}.systemContext()
		if err != nil {
			t.Fatal(err)
		}
		instance, held := p.heldInstance(img, fx.indexes["multi:1"], v1.MediaTypeImageIndex, []string{name}, sys)
		if held != tt.held || (held && instance != variants[0].Manifest) {
			t.Errorf("%s: held %v (instance %s), want %v (%s)", tt.platform, held, instance, tt.held, variants[0].Manifest)
		}
	}
}
