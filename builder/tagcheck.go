package builder

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/docker/distribution/registry/client/auth/challenge"
	"github.com/docker/go-connections/tlsconfig"
	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/pkg/docker/config"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/pkg/tlsclientconfig"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage/pkg/configfile"
	"go.podman.io/storage/pkg/fileutils"
	"go.podman.io/storage/pkg/unshare"
)

// tagChecks asks registries which manifest a tag names now, with one HEAD request per tag over one
// client per registry that every image of a run shares: its connections, its /v2/ ping and, per
// repository, its token. A resync asks it first about each image the store holds under the tag's name,
// and does nothing more when the answer is the manifest the store holds.
//
// Why this is cargohold's and not containers/image's: the image library gives every image source a
// client of its own (a new http.Transport, a new ping — over TLS first, then over plain HTTP for an
// insecure registry —, a new token), and nothing public lets sources share one: types.SystemContext
// carries TLS settings, a proxy and credentials, not a client, and docker.GetDigest makes a client of
// its own too. A no-op image cost three connections and two requests, six round trips to a far
// registry and two thirds of a local registry's CPU (docs/PERFORMANCE.md). The check takes from the
// libraries everything but the one request: registries.conf (location, mirrors, insecure, blocked),
// credentials (pkg/docker/config), TLS files (pkg/tlsclientconfig), the manifest types asked for,
// the trust policy, the parsing of authentication challenges (docker/distribution's). Its own are
// the ping, the HEAD request and the token request of the bearer protocol (the image library's are
// private). Whatever it does not decide — mirrors, a policy that wants to see the image, a registry
// it cannot reach, any error — is left to the image library's full path, which reports errors as
// before: the check can only make an image "unchanged".
type tagChecks struct {
	idle    int // idle connections kept per registry: as many as images are checked at once
	mu      sync.Mutex
	clients map[tagClientKey]*tagClient
	creds   map[credsKey]types.DockerAuthConfig
}

// credsKey is what the credentials for a repository depend on.
type credsKey struct {
	authFile, registriesConf string
	given                    types.DockerAuthConfig // --creds
	repo                     string
}

// credentials are the image library's credentials for the repository of ref, looked up once per run
// (each lookup reads the auth files, and may run a credential helper).
func (tc *tagChecks) credentials(sys *types.SystemContext, ref reference.Named) (types.DockerAuthConfig, error) {
	key := credsKey{authFile: sys.AuthFilePath, registriesConf: sys.SystemRegistriesConfPath, repo: ref.Name()}
	if sys.DockerAuthConfig != nil {
		key.given = *sys.DockerAuthConfig
	}
	tc.mu.Lock()
	creds, ok := tc.creds[key]
	tc.mu.Unlock()
	if ok {
		return creds, nil
	}
	creds, err := config.GetCredentialsForRef(sys, ref)
	if err != nil {
		return creds, err
	}
	tc.mu.Lock()
	if tc.creds == nil {
		tc.creds = map[credsKey]types.DockerAuthConfig{}
	}
	tc.creds[key] = creds
	tc.mu.Unlock()
	return creds, nil
}

// tagClientKey is what a registry's connections depend on.
type tagClientKey struct {
	host     string // host[:port] of the registry's API
	insecure bool   // TLS unverified and, if TLS fails, plain HTTP (registries.conf insecure, --tls-verify=false)
	certDir  string
}

// tagClient is one registry's client, shared by the images of a run.
type tagClient struct {
	key        tagClientKey
	tr         *http.Transport
	ping       sync.Once
	pingErr    error
	base       *url.URL              // scheme://host that answered the ping
	challenges []challenge.Challenge // how the registry wants to be authenticated, from the ping
	mu         sync.Mutex
	tokens     map[tagAuthKey]*bearerToken // a token's scope is one repository
}

type tagAuthKey struct {
	repo string
	auth types.DockerAuthConfig
}

// errNotChecked: the tag cannot be checked with one request; the image library's path decides.
var errNotChecked = errors.New("not checked by a HEAD request")

// manifestDigest is the digest and MIME type of the manifest (or list) that the tag of ref (a docker
// reference) names now, as the registry (or the location registries.conf puts in its place) says in
// a HEAD request.
func (tc *tagChecks) manifestDigest(ctx context.Context, ref types.ImageReference, sys *types.SystemContext) (digest.Digest, string, error) {
	named, ok := ref.DockerReference().(reference.NamedTagged)
	if !ok {
		return "", "", errNotChecked
	}
	physical, insecure, err := pullSource(named, sys)
	if err != nil {
		return "", "", err
	}
	hostName := reference.Domain(physical)
	dir, err := certDir(sys, hostName)
	if err != nil {
		return "", "", err
	}
	key := tagClientKey{host: hostName, insecure: insecure, certDir: dir}
	if key.host == "docker.io" { // the image library's dockerHostname → dockerRegistry
		key.host = "registry-1.docker.io"
	}
	c, err := tc.client(ctx, key)
	if err != nil {
		return "", "", err
	}
	if sys.DockerAuthConfig != nil && reference.Domain(physical) != reference.Domain(named) {
		// As the image library: --creds are the named registry's, not sent to another location.
		endpoint := *sys
		endpoint.DockerAuthConfig = nil
		sys = &endpoint
	}
	creds, err := tc.credentials(sys, physical)
	if err != nil {
		return "", "", err
	}
	return c.head(ctx, reference.Path(physical), named.Tag(), creds)
}

// pullSource is where the image library would fetch named from: the one location registries.conf
// gives it (mirrors: errNotChecked), and whether it is insecure.
func pullSource(named reference.Named, sys *types.SystemContext) (reference.Named, bool, error) {
	physical, insecure := named, false
	reg, err := sysregistriesv2.FindRegistry(sys, named.Name())
	if err != nil {
		return nil, false, err
	}
	if reg != nil {
		if reg.Blocked {
			return nil, false, errNotChecked // the full path says so
		}
		sources, err := reg.PullSourcesFromReference(named)
		if err != nil {
			return nil, false, err
		}
		if len(sources) != 1 || sources[0].Endpoint.NamespaceProxy != "" {
			return nil, false, errNotChecked
		}
		physical, insecure = sources[0].Reference, sources[0].Endpoint.Insecure
	}
	if sys != nil && sys.DockerBearerRegistryToken != "" {
		return nil, false, errNotChecked
	}
	if sys != nil && sys.DockerInsecureSkipTLSVerify != types.OptionalBoolUndefined {
		insecure = sys.DockerInsecureSkipTLSVerify == types.OptionalBoolTrue
	}
	return physical, insecure, nil
}

// certDir is the directory of TLS files the image library uses for host (host[:port] as the
// reference names it: docker.io, not registry-1.docker.io). It mirrors dockerCertDir in
// go.podman.io/image/v5's docker/docker_client.go (v5.42.0), which is private, as is the client it
// configures (newDockerClient): nothing exported hands out a registry's TLS config or transport.
// The search list is the library's own call (configfile.GetSearchPaths for certs.d; for root:
// $HOME/.config/containers/certs.d, /etc/containers/certs.rootful.d, /etc/containers/certs.d,
// /usr/share/containers/certs.rootful.d, /usr/share/containers/certs.d), then /etc/docker/certs.d;
// the first HOST directory there is wins. --cert-dir (DockerCertPath) comes before all, then
// DockerPerHostCertDirPath/HOST, existing or not. TestCertDirAgreesWithLibrary holds the two together.
func certDir(sys *types.SystemContext, host string) (string, error) {
	if sys == nil {
		sys = &types.SystemContext{}
	}
	if sys.DockerCertPath != "" {
		return sys.DockerCertPath, nil
	}
	if sys.DockerPerHostCertDirPath != "" {
		return filepath.Join(sys.DockerPerHostCertDirPath, host), nil
	}
	paths, err := configfile.GetSearchPaths(&configfile.File{
		Name: "certs", Extension: "d", DoNotUseExtensionForConfigName: true,
		UserId: unshare.GetRootlessUID(), RootForImplicitAbsolutePaths: sys.RootForImplicitAbsolutePaths,
	})
	if err != nil {
		return "", err
	}
	candidates := slices.Concat(paths.DropInDirectories, []string{filepath.Join(sys.RootForImplicitAbsolutePaths, "/etc/docker/certs.d")})
	for _, base := range candidates {
		dir := filepath.Join(base, host)
		err := fileutils.Exists(dir)
		switch {
		case err == nil:
			return dir, nil
		case os.IsNotExist(err) || os.IsPermission(err): // the library skips those too
		default:
			return "", err
		}
	}
	return "", nil
}

// client is the run's client of a registry, pinged once.
func (tc *tagChecks) client(ctx context.Context, key tagClientKey) (*tagClient, error) {
	tc.mu.Lock()
	c := tc.clients[key]
	if c == nil {
		if tc.clients == nil {
			tc.clients = map[tagClientKey]*tagClient{}
		}
		c = &tagClient{key: key, tokens: map[tagAuthKey]*bearerToken{}}
		tc.clients[key] = c
	}
	tc.mu.Unlock()
	c.ping.Do(func() { c.pingErr = c.connect(ctx, tc.idle) })
	return c, c.pingErr
}

// closeIdle closes the connections the run's clients keep open.
func (tc *tagChecks) closeIdle() {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	for _, c := range tc.clients {
		if c.tr != nil {
			c.tr.CloseIdleConnections()
		}
	}
}

// connect sets up the transport as the image library does (its TLS defaults and files) and pings
// the registry: https, and http if that fails and the registry is insecure. The ping's challenges
// say how to authenticate.
func (c *tagClient) connect(ctx context.Context, idle int) error {
	tlsc := &tls.Config{CipherSuites: tlsconfig.ClientDefault().CipherSuites, InsecureSkipVerify: c.key.insecure} //nolint:gosec // as registries.conf or --tls-verify=false say
	if c.key.certDir != "" {
		if err := tlsclientconfig.SetupCertificates(c.key.certDir, tlsc); err != nil {
			return err
		}
	}
	c.tr = tlsclientconfig.NewTransport()
	c.tr.TLSClientConfig = tlsc
	c.tr.MaxIdleConnsPerHost = max(idle, 2)
	err := c.pingScheme(ctx, "https")
	if err != nil && c.key.insecure {
		err = c.pingScheme(ctx, "http")
	}
	return err
}

func (c *tagClient) pingScheme(ctx context.Context, scheme string) error {
	base := &url.URL{Scheme: scheme, Host: c.key.host}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base.JoinPath("/v2/").String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", userAgent)
	resp, err := (&http.Client{Transport: c.tr}).Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // read to the end: the connection is reused
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized {
		return fmt.Errorf("pinging %s: %s", base, resp.Status)
	}
	c.base = base
	c.challenges = challenge.ResponseChallenges(resp)
	return nil
}

// head asks for the digest and MIME type of the manifest repo:tag names; an error for any answer
// but 200.
func (c *tagClient) head(ctx context.Context, repo, tag string, creds types.DockerAuthConfig) (digest.Digest, string, error) {
	u := c.base.JoinPath("/v2/", repo, "manifests", tag)
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u.String(), nil)
	if err != nil {
		return "", "", err
	}
	for _, mt := range manifest.DefaultRequestedManifestMIMETypes {
		req.Header.Add("Accept", mt)
	}
	req.Header.Set("User-Agent", userAgent)
	if err := c.authorize(ctx, req, repo, creds); err != nil {
		return "", "", err
	}
	resp, err := (&http.Client{Transport: c.tr}).Do(req)
	if err != nil {
		return "", "", err
	}
	_ = resp.Body.Close() // a HEAD has no body
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("HEAD %s: %s", u, resp.Status)
	}
	d, err := digest.Parse(resp.Header.Get("Docker-Content-Digest"))
	return d, manifest.NormalizedMIMEType(resp.Header.Get("Content-Type")), err
}

// authorize authenticates req for pulling repo as the ping's first challenge asks, as the image
// library does: basic auth with creds, or a bearer token for the repository (fetched once per run
// and repository, again when it expires). An identity token (OAuth) or a registry token is left to
// the library (errNotChecked).
func (c *tagClient) authorize(ctx context.Context, req *http.Request, repo string, creds types.DockerAuthConfig) error {
	for _, ch := range c.challenges {
		switch ch.Scheme {
		case "basic":
			req.SetBasicAuth(creds.Username, creds.Password)
			return nil
		case "bearer":
			if creds.IdentityToken != "" {
				return errNotChecked
			}
			token, err := c.token(ctx, ch, repo, creds)
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+token)
			return nil
		}
	}
	return nil
}

// token is a bearer token for pulling repo with creds, from the token service the challenge names
// (the protocol of distribution's docs/spec/auth/token.md, as the image library speaks it).
func (c *tagClient) token(ctx context.Context, ch challenge.Challenge, repo string, creds types.DockerAuthConfig) (string, error) {
	key := tagAuthKey{repo: repo, auth: creds}
	c.mu.Lock()
	t := c.tokens[key]
	if t == nil {
		t = &bearerToken{}
		c.tokens[key] = t
	}
	c.mu.Unlock()
	t.mu.Lock() // one request per repository, the others wait for it
	defer t.mu.Unlock()
	if t.token != "" && time.Now().Before(t.expires) {
		return t.token, nil
	}
	realm, err := url.Parse(ch.Parameters["realm"])
	if err != nil || realm.Scheme == "" {
		return "", fmt.Errorf("bearer challenge without a realm URL: %q", ch.Parameters["realm"])
	}
	q := realm.Query()
	if service := ch.Parameters["service"]; service != "" {
		q.Set("service", service)
	}
	q.Add("scope", "repository:"+repo+":pull")
	if creds.Username != "" {
		q.Set("account", creds.Username)
	}
	realm.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, realm.String(), nil)
	if err != nil {
		return "", err
	}
	if creds.Username != "" && creds.Password != "" {
		req.SetBasicAuth(creds.Username, creds.Password)
	}
	req.Header.Set("User-Agent", userAgent)
	resp, err := (&http.Client{Transport: c.tr}).Do(req)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("token request %s: %s", realm.Redacted(), resp.Status)
	}
	var body struct {
		Token       string    `json:"token"`
		AccessToken string    `json:"access_token"`
		ExpiresIn   int       `json:"expires_in"`
		IssuedAt    time.Time `json:"issued_at"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return "", fmt.Errorf("token request %s: %w", realm.Redacted(), err)
	}
	t.token = cmp.Or(body.Token, body.AccessToken)
	if t.token == "" {
		return "", fmt.Errorf("token request %s: no token in the answer", realm.Redacted())
	}
	issued := body.IssuedAt
	if issued.IsZero() {
		issued = time.Now()
	}
	// As the image library: a token said to live less than a minute (or not said) lives a minute.
	t.expires = issued.Add(time.Duration(max(body.ExpiresIn, 60)) * time.Second)
	return t.token, nil
}

type bearerToken struct {
	mu      sync.Mutex
	token   string
	expires time.Time
}

// acceptedUnseen says whether the trust policy accepts the image of ref without looking at it: a
// policy that accepts (or rejects) every image of a scope. One that wants the manifest or signatures
// gets an error here, and the image takes the library's path, which fetches and checks them.
func acceptedUnseen(ctx context.Context, policy *signature.PolicyContext, ref types.ImageReference) bool {
	allowed, err := policy.IsRunningImageAllowed(ctx, unseenImage{ref})
	return err == nil && allowed
}

// unseenImage is an image known by its reference only.
type unseenImage struct{ ref types.ImageReference }

var errUnseen = errors.New("the image was not fetched")

func (u unseenImage) Reference() types.ImageReference { return u.ref }
func (u unseenImage) Manifest(context.Context) ([]byte, string, error) {
	return nil, "", errUnseen
}
func (u unseenImage) Signatures(context.Context) ([][]byte, error) { return nil, errUnseen }

// userAgent is what cargohold's requests say they are, as the image library's (SystemContext).
const userAgent = "cargohold"
