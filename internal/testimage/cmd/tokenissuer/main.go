// Command tokenissuer is the token service of scripts/e2e-registry's token-authenticated registry:
// docker-registry 2.8 with `auth: token:` sends every client to it for a bearer token
// (distribution's docs/spec/auth/token.md), as a site's token service (docker_auth, GitLab's,
// Harbor's) does. Debian packages none, and the protocol is small: for a GET of /token with the
// right user and password (basic auth) it answers a JWT that grants the scopes asked for, signed
// (ES256) by a key it makes at start; the key's self-signed certificate goes into the token's x5c
// header and into -cert, the registry's rootcertbundle. Any other login gets 401.
//
//	tokenissuer -listen 127.0.0.1:PORT -cert FILE -issuer NAME -service NAME -user USER -password PASS
//
// It writes -cert before it listens, prints one line per token request on standard output
// ("STATUS account=USER scope=SCOPE..."), so that a test can count them, and runs until it is killed.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

type issuer struct {
	key            *ecdsa.PrivateKey
	certDER        []byte
	name, service  string
	user, password string
	lifetime       time.Duration
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "`ADDR` to listen on")
	certFile := flag.String("cert", "", "`FILE` to write the signing key's certificate to (PEM)")
	is := &issuer{lifetime: 5 * time.Minute}
	flag.StringVar(&is.name, "issuer", "cargohold-test-issuer", "the tokens' issuer (iss)")
	flag.StringVar(&is.service, "service", "cargohold-test-registry", "the registry's service name (aud)")
	flag.StringVar(&is.user, "user", "", "the one user given tokens")
	flag.StringVar(&is.password, "password", "", "its password")
	flag.Parse()
	if *certFile == "" || is.user == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: tokenissuer -listen ADDR -cert FILE -user USER -password PASS [-issuer NAME] [-service NAME]")
		os.Exit(2)
	}
	if err := is.makeKey(*certFile); err != nil {
		fmt.Fprintln(os.Stderr, "tokenissuer:", err)
		os.Exit(1)
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tokenissuer:", err)
		os.Exit(1)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /token", is.serveToken)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintln(os.Stderr, "tokenissuer:", srv.Serve(l))
	os.Exit(1)
}

// makeKey makes the signing key and its self-signed certificate, written to certFile.
func (is *issuer) makeKey(certFile string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: is.name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	is.key, is.certDER = key, der
	return os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// access is one grant of a token: what the registry checks a request against.
type access struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

func (is *issuer) serveToken(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	user, password, _ := r.BasicAuth()
	scopes := q["scope"]
	status := http.StatusOK
	defer func() { fmt.Printf("%d account=%s scope=%s\n", status, user, strings.Join(scopes, ",")) }()
	if user != is.user || subtle.ConstantTimeCompare([]byte(password), []byte(is.password)) != 1 {
		status = http.StatusUnauthorized
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = fmt.Fprintln(w, `{"errors":[{"code":"UNAUTHORIZED","message":"invalid username or password"}]}`)
		return
	}
	if service := q.Get("service"); service != is.service {
		status = http.StatusBadRequest
		http.Error(w, fmt.Sprintf("unknown service %q", service), status)
		return
	}
	grants := []access{}
	for _, scope := range scopes {
		// type:name:actions; a name may hold a colon (a registry's host:port), the actions none.
		typ, rest, ok1 := strings.Cut(scope, ":")
		i := strings.LastIndex(rest, ":")
		if !ok1 || i < 0 {
			status = http.StatusBadRequest
			http.Error(w, fmt.Sprintf("bad scope %q", scope), status)
			return
		}
		grants = append(grants, access{Type: typ, Name: rest[:i], Actions: strings.Split(rest[i+1:], ",")})
	}
	now := time.Now()
	token, err := is.sign(map[string]any{
		"iss": is.name, "sub": user, "aud": is.service,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(is.lifetime).Unix(),
		"jti": fmt.Sprintf("%x", now.UnixNano()), "access": grants,
	})
	if err != nil {
		status = http.StatusInternalServerError
		http.Error(w, err.Error(), status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"token": token, "access_token": token,
		"expires_in": int(is.lifetime.Seconds()), "issued_at": now.UTC().Format(time.RFC3339),
	})
}

// sign makes the JWS compact serialization of claims: ES256 (the signature is r and s, 32 bytes
// each), the certificate in the x5c header, which the registry verifies against its rootcertbundle.
func (is *issuer) sign(claims map[string]any) (string, error) {
	header, err := json.Marshal(map[string]any{
		"typ": "JWT", "alg": "ES256", "x5c": []string{base64.StdEncoding.EncodeToString(is.certDER)},
	})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString(header) + "." + enc.EncodeToString(payload)
	sum := sha256.Sum256([]byte(signed))
	r, s, err := ecdsa.Sign(rand.Reader, is.key, sum[:])
	if err != nil {
		return "", err
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signed + "." + enc.EncodeToString(sig), nil
}
