// Package builder publishes images into a store: a Publisher resolves each reference with
// containers/image, fetches and verifies the layers the store lacks, unpacks them (builder/unpack)
// into layers the store stages, and hands the image to layout (CommitLayer, PutImage).
// It knows registries and tar; it never names a file inside the store.
package builder

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cargohold/cargohold/internal/platform"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
)

// Options say how to reach registries and which images are acceptable. The zero value means:
// the host's platform, TLS verified, default auth file, registries.conf and policy.json.
type Options struct {
	Platform       string // "os/arch[/variant]"; empty: the host's
	TLSVerify      *bool  // nil: the registries.conf default (verify)
	AuthFile       string // empty: containers' default auth file locations
	// Creds is "USER:PASSWORD" for every registry that asks (skopeo's --creds); it wins over AuthFile.
	Creds string
	// CertDir holds the client certificates and CA certificates (*.crt, *.cert, *.key) for TLS;
	// empty: /etc/containers/certs.d/HOST/ and /etc/docker/certs.d/HOST/.
	CertDir        string
	RegistriesConf string // empty: /etc/containers/registries.conf (and drop-ins)
	PolicyPath     string // empty: /etc/containers/policy.json
	InsecurePolicy bool   // accept every image without consulting policy.json (skopeo's --insecure-policy)
	MaxLayerSize   int64  // limit on one layer's uncompressed size; 0: none
	// RetryTimes is how often a registry request that failed for a transient reason (network,
	// 5xx, 429) is tried again, with a growing pause; 0: never (the CLI's default is 3, as podman's).
	RetryTimes int
	// Strict turns what would be a warning about an image into a failure of that image.
	Strict bool
}

// systemContext is the containers/image view of Options.
func (o Options) systemContext() (*types.SystemContext, error) {
	sys := &types.SystemContext{
		AuthFilePath:             o.AuthFile,
		DockerCertPath:           o.CertDir,
		SystemRegistriesConfPath: o.RegistriesConf,
		SignaturePolicyPath:      o.PolicyPath,
		DockerRegistryUserAgent:  "cargohold",
	}
	if o.Creds != "" {
		user, password, err := splitCreds(o.Creds)
		if err != nil {
			return nil, err
		}
		sys.DockerAuthConfig = &types.DockerAuthConfig{Username: user, Password: password}
	}
	if o.TLSVerify != nil {
		sys.DockerInsecureSkipTLSVerify = types.NewOptionalBool(!*o.TLSVerify)
	}
	if o.Platform != "" {
		p, err := platform.Parse(o.Platform)
		if err != nil {
			return nil, err
		}
		sys.OSChoice, sys.ArchitectureChoice, sys.VariantChoice = p.OS, p.Arch, p.Variant
	}
	return sys, nil
}

// splitCreds splits "USER:PASSWORD" (the password may hold colons).
func splitCreds(creds string) (user, password string, err error) {
	user, password, ok := strings.Cut(creds, ":")
	if !ok || user == "" {
		return "", "", errors.New("--creds: want USER:PASSWORD")
	}
	return user, password, nil
}

// policyContext decides which images may be published, exactly as Podman decides which it may pull.
func (o Options) policyContext(sys *types.SystemContext) (*signature.PolicyContext, error) {
	var policy *signature.Policy
	if o.InsecurePolicy {
		policy = &signature.Policy{Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()}}
	} else {
		var err error
		if policy, err = signature.DefaultPolicy(sys); err != nil {
			return nil, fmt.Errorf("reading the image trust policy (policy.json; --insecure-policy skips it): %w", err)
		}
	}
	return signature.NewPolicyContext(policy)
}
