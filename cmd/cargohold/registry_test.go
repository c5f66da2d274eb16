package main

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cargohold/cargohold/internal/testenv"
)

// A yes/no flag followed by its value as a word of its own is an error saying how to write it:
// "false" would otherwise be an image to publish.
func TestBoolFlagWithAValueWord(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"publish", "--store", dir, "--tls-verify", "false", "docker://127.0.0.1:1/team/app:1"},
		{"publish", "docker://127.0.0.1:1/team/app:1", "--store", dir, "--quiet", "True"},
		{"gc", "--store", dir, "--dry-run", "true"},
	} {
		r := cargohold(t, args...)
		flag := args[slices.Index(args, "--store")+2]
		r.want(t, 2, "a yes/no flag takes its value after \"=\": write "+flag+"=")
		if _, err := os.Stat(filepath.Join(dir, ".cargohold")); err == nil {
			t.Fatalf("%v created a store", args)
		}
	}
}

// manifestUnknown is a registry that holds nothing: an error saying "manifest unknown" got past
// TLS and login.
var manifestUnknown = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v2/" {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	_, _ = w.Write([]byte(`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`))
})

// A registry over HTTPS with a private authority: the error names --cert-dir, and --cert-dir
// with the authority's certificate gets through.
func TestCertDir(t *testing.T) {
	testenv.RequireRoot(t)
	srv := httptest.NewTLSServer(manifestUnknown)
	defer srv.Close()
	dir := t.TempDir()
	ref := "docker://" + strings.TrimPrefix(srv.URL, "https://") + "/team/app:1"
	args := []string{"publish", "--store", filepath.Join(dir, "store"), "--insecure-policy", "--retry-times", "0", ref}
	cargohold(t, args...).want(t, 1, "signed by an authority this host does not trust", "--cert-dir DIR")

	certs := filepath.Join(dir, "certs")
	if err := os.Mkdir(certs, 0o755); err != nil {
		t.Fatal(err)
	}
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(filepath.Join(certs, "ca.crt"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	r := cargohold(t, append(args, "--cert-dir", certs)...)
	r.want(t, 1, "manifest unknown")
	if strings.Contains(r.stderr, "authority") {
		t.Errorf("--cert-dir did not make the certificate trusted:\n%s", r.stderr)
	}
	cargohold(t, append(args, "--cert-dir", filepath.Join(dir, "none"))...).want(t, 2, "--cert-dir", "none")
}

// A plain-HTTP registry reached without --tls-verify=false: the error says what to do.
func TestPlainHTTPRegistry(t *testing.T) {
	testenv.RequireRoot(t)
	srv := httptest.NewServer(manifestUnknown)
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	cargohold(t, "publish", "--store", filepath.Join(t.TempDir(), "store"), "--insecure-policy", "--retry-times", "0",
		"docker://"+host+"/team/app:1").want(t, 1, host+" answers over plain HTTP, not HTTPS", "use --tls-verify=false", "registries.conf")
}

// --creds logs in (as skopeo's), and needs USER:PASSWORD.
func TestCredsFlag(t *testing.T) {
	testenv.RequireRoot(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user, password, ok := r.BasicAuth(); !ok || user != "lab" || password != "s3cret pass" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		manifestUnknown(w, r)
	}))
	defer srv.Close()
	dir := t.TempDir()
	auth := filepath.Join(dir, "auth.json")
	if err := os.WriteFile(auth, []byte(`{"auths":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"publish", "--store", filepath.Join(dir, "store"), "--insecure-policy", "--tls-verify=false",
		"--retry-times", "0", "--authfile", auth, "docker://" + strings.TrimPrefix(srv.URL, "http://") + "/team/app:1"}
	cargohold(t, args...).want(t, 1, "authentication to")
	cargohold(t, append(args, "--creds", "lab:s3cret pass")...).want(t, 1, "manifest unknown")
	cargohold(t, append(args, "--creds", "lab")...).want(t, 2, "--creds: want USER:PASSWORD")
}
