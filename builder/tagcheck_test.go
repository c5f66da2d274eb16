package builder

import (
	"context"
	"encoding/base64"
	"encoding/pem"
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

// The TLS files are those the image library reads for the registry: a TLS registry whose authority
// is known only through a certs.d directory is reached by the library (docker.CheckAuth, its own
// client) exactly when it is reached by the tag check's client. The places are those of a root cron
// job: $HOME/.config/containers (XDG_CONFIG_HOME here), /etc/containers, /usr/share/containers and
// /etc/docker below a root of the test's (RootForImplicitAbsolutePaths), --cert-dir
// (DockerCertPath) and DockerPerHostCertDirPath. A directory without the authority's certificate
// where the library looks first hides one further down.
func TestCertDirAgreesWithLibrary(t *testing.T) {
	testenv.RequireRoot(t) // the places are root's (certs.rootful.d, not certs.rootless.d/UID)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "https://")
	ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	for _, tt := range []struct {
		name     string
		ca, hide []string // certs.d dirs (below the test's root; ~ is XDG_CONFIG_HOME) with the CA, and empty
		certPath string   // --cert-dir, "" or one of ca/hide as "dir:NAME"
		perHost  string   // DockerPerHostCertDirPath
		want     bool     // the registry is reached
	}{
		{name: "no certs.d directory", want: false},
		{name: "/etc/containers/certs.d", ca: []string{"/etc/containers/certs.d"}, want: true},
		{name: "/etc/containers/certs.rootful.d", ca: []string{"/etc/containers/certs.rootful.d"}, want: true},
		{name: "/usr/share/containers/certs.d", ca: []string{"/usr/share/containers/certs.d"}, want: true},
		{name: "/etc/docker/certs.d", ca: []string{"/etc/docker/certs.d"}, want: true},
		{name: "$HOME/.config/containers/certs.d", ca: []string{"~/containers/certs.d"}, want: true},
		{name: "/etc/containers hides /etc/docker", ca: []string{"/etc/docker/certs.d"}, hide: []string{"/etc/containers/certs.d"}, want: false},
		{name: "$HOME hides /etc/containers", ca: []string{"/etc/containers/certs.d"}, hide: []string{"~/containers/certs.d"}, want: false},
		{name: "rootful.d hides certs.d", ca: []string{"/etc/containers/certs.d"}, hide: []string{"/etc/containers/certs.rootful.d"}, want: false},
		{name: "/etc/containers hides /usr/share", ca: []string{"/usr/share/containers/certs.d"}, hide: []string{"/etc/containers/certs.d"}, want: false},
		{name: "--cert-dir", certPath: "/given", want: true},
		{name: "--cert-dir over certs.d", certPath: "/empty", ca: []string{"/etc/containers/certs.d"}, want: false},
		{name: "DockerPerHostCertDirPath", perHost: "/per-host", want: true},
		{name: "DockerPerHostCertDirPath without the host over certs.d", perHost: "/elsewhere", ca: []string{"/etc/containers/certs.d"}, want: false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root, home := t.TempDir(), t.TempDir()
			t.Setenv("XDG_CONFIG_HOME", home)
			dir := func(base string) string {
				if rest, ok := strings.CutPrefix(base, "~"); ok {
					return filepath.Join(home, rest, host)
				}
				return filepath.Join(root, base, host)
			}
			for _, d := range tt.hide {
				if err := os.MkdirAll(dir(d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for _, d := range append(tt.ca, "/given", "/per-host") {
				if err := os.MkdirAll(dir(d), 0o755); err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(dir(d), "ca.crt"), ca)
			}
			if err := os.MkdirAll(filepath.Join(root, "empty"), 0o755); err != nil {
				t.Fatal(err)
			}
			sys := &types.SystemContext{RootForImplicitAbsolutePaths: root}
			if tt.certPath != "" {
				sys.DockerCertPath = filepath.Join(root, tt.certPath)
				if tt.certPath == "/given" {
					sys.DockerCertPath = dir("/given")
				}
			}
			if tt.perHost != "" {
				sys.DockerPerHostCertDirPath = filepath.Join(root, tt.perHost)
			}
			libErr := docker.CheckAuth(context.Background(), sys, "", "", host)
			d, err := certDir(sys, host)
			if err == nil {
				tc := &tagChecks{}
				_, err = tc.client(context.Background(), tagClientKey{host: host, certDir: d})
				tc.closeIdle()
			}
			if (libErr == nil) != tt.want || (err == nil) != tt.want {
				t.Errorf("reached: the library %v (%v), the tag check %v with %q (%v); want %v", libErr == nil, libErr, err == nil, d, err, tt.want)
			}
		})
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
