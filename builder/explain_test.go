package builder

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
)

// fakeRegistry answers /v2/ (asking for user:password when given) and nothing else: every
// manifest is unknown. An error that says "manifest unknown" got past TLS and login.
func fakeRegistry(userPassword string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, password, ok := r.BasicAuth()
		if userPassword != "" && (!ok || user+":"+password != userPassword) {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`))
			return
		}
		if r.URL.Path == "/v2/" {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`))
	})
}

// resolveWith resolves ref with opts (no retries) and returns the error's text ("" for none).
func resolveWith(t *testing.T, ref string, opts Options) string {
	t.Helper()
	opts.InsecurePolicy = true
	sys, policy := contextsOf(t, opts)
	input, err := parseImageRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	s, err := resolve(context.Background(), input, sys, policy, 0)
	if err != nil {
		return err.Error()
	}
	_ = s.Close()
	return ""
}

// contextsOf is the system and trust-policy contexts of opts, as a publish makes them; the policy
// context is destroyed when the test ends.
func contextsOf(t *testing.T, opts Options) (*types.SystemContext, *signature.PolicyContext) {
	t.Helper()
	sys, err := opts.systemContext()
	if err != nil {
		t.Fatal(err)
	}
	policy, err := opts.policyContext(sys)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = policy.Destroy() })
	return sys, policy
}

func wantError(t *testing.T, what, got string, has ...string) {
	t.Helper()
	if got == "" {
		t.Fatalf("%s: no error", what)
	}
	for _, s := range has {
		if !strings.Contains(got, s) {
			t.Errorf("%s: the error does not say %q:\n%s", what, s, got)
		}
	}
}

// A plain-HTTP registry reached with TLS verification on: the error says what to do.
func TestPlainHTTPRegistrySaysWhatToDo(t *testing.T) {
	srv := httptest.NewServer(fakeRegistry(""))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ref := "docker://" + host + "/team/app:1"
	wantError(t, "TLS verified", resolveWith(t, ref, Options{}), host+" answers over plain HTTP, not HTTPS",
		"use --tls-verify=false", "mark it insecure in registries.conf")
	no := false
	wantError(t, "--tls-verify=false", resolveWith(t, ref, Options{TLSVerify: &no}), "manifest unknown")
}

// A registry whose certificate this host does not trust: the error names --cert-dir and
// SSL_CERT_FILE, and --cert-dir with the authority's certificate gets through.
func TestUnknownAuthoritySaysWhatToDo(t *testing.T) {
	srv := httptest.NewTLSServer(fakeRegistry(""))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "https://")
	ref := "docker://" + host + "/team/app:1"
	wantError(t, "unknown CA", resolveWith(t, ref, Options{}), "signed by an authority this host does not trust",
		"--cert-dir DIR", "SSL_CERT_FILE", "/etc/containers/certs.d/"+host+"/")

	certDir := t.TempDir()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(filepath.Join(certDir, "ca.crt"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	got := resolveWith(t, ref, Options{CertDir: certDir})
	wantError(t, "--cert-dir", got, "manifest unknown")
	if strings.Contains(got, "authority") {
		t.Errorf("--cert-dir did not make the certificate trusted:\n%s", got)
	}
}

// --creds logs in as skopeo's does, over whatever auth file says.
func TestCredsLogIn(t *testing.T) {
	srv := httptest.NewServer(fakeRegistry("lab:s3cret:pass"))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ref := "docker://" + host + "/team/app:1"
	no := false
	empty := filepath.Join(t.TempDir(), "auth.json")
	if err := os.WriteFile(empty, []byte(`{"auths":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	wantError(t, "no creds", resolveWith(t, ref, Options{TLSVerify: &no, AuthFile: empty}), "authentication to "+host+" failed")
	wantError(t, "--creds", resolveWith(t, ref, Options{TLSVerify: &no, AuthFile: empty, Creds: "lab:s3cret:pass"}), "manifest unknown")
	if err := (Request{Ref: ref, Options: &Options{Creds: "lab"}}).Check(); err == nil || !strings.Contains(err.Error(), "USER:PASSWORD") {
		t.Errorf("--creds without a password: %v", err)
	}
}
