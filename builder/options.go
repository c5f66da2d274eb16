// Package builder publishes images into a store: a Publisher resolves each reference with
// containers/image, fetches and verifies the layers the store lacks, unpacks them (builder/unpack)
// into layers the store stages, and hands the image to layout (CommitLayer, PutImage).
// It knows registries and tar; it never names a file inside the store.
package builder

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/cargohold/cargohold/internal/platform"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
)

// Options say how to fetch one image: how to reach registries and which images are acceptable.
// It is the one type for that: a recipe's [defaults] and [[image]] settings (recipe.Settings embeds
// it; the fields with a toml key are the recipe's), the command line's flags and a Request's options
// are all Options, combined by Over. The zero value means: the host's platform, TLS verified, default
// auth file, registries.conf and policy.json.
type Options struct {
	Platform  string `toml:"platform"`   // "os/arch[/variant]"; empty: the host's
	TLSVerify *bool  `toml:"tls-verify"` // nil: the registries.conf default (verify)
	AuthFile  string `toml:"authfile"`   // empty: containers' default auth file locations
	// Creds is "USER:PASSWORD" for every registry that asks (skopeo's --creds); it wins over
	// AuthFile. Not a recipe key: a recipe is often world-readable.
	Creds string `toml:"-"`
	// CertDir holds the client certificates and CA certificates (*.crt, *.cert, *.key) for TLS;
	// empty: /etc/containers/certs.d/HOST/ and /etc/docker/certs.d/HOST/.
	CertDir        string `toml:"-"`
	RegistriesConf string `toml:"-"` // empty: /etc/containers/registries.conf (and drop-ins)
	PolicyPath     string `toml:"-"` // empty: /etc/containers/policy.json
	InsecurePolicy bool   `toml:"-"` // accept every image without consulting policy.json (skopeo's --insecure-policy)
	MaxLayerSize   int64  `toml:"-"` // limit on one layer's uncompressed size; 0: none
	// RetryTimes is how often a registry request that failed for a transient reason (network,
	// 5xx, 429) is tried again, with a growing pause; 0: never (the CLI's default is 3, as podman's).
	RetryTimes int `toml:"-"`
	// Strict turns what would be a warning about an image into a failure of that image.
	Strict bool `toml:"-"`
}

// Over is o with each field it leaves unset (its zero value, nil for TLSVerify) taken from base:
// an [[image]]'s settings over the flags over the recipe's [defaults] (see recipe.Settings.Over).
// The fields without a toml key are set by flags only, so only the flags' values reach them.
func (o Options) Over(base Options) Options {
	if o.Platform == "" {
		o.Platform = base.Platform
	}
	if o.TLSVerify == nil {
		o.TLSVerify = base.TLSVerify
	}
	o.AuthFile = cmp.Or(o.AuthFile, base.AuthFile)
	o.Creds = cmp.Or(o.Creds, base.Creds)
	o.CertDir = cmp.Or(o.CertDir, base.CertDir)
	o.RegistriesConf = cmp.Or(o.RegistriesConf, base.RegistriesConf)
	o.PolicyPath = cmp.Or(o.PolicyPath, base.PolicyPath)
	o.InsecurePolicy = o.InsecurePolicy || base.InsecurePolicy
	o.MaxLayerSize = cmp.Or(o.MaxLayerSize, base.MaxLayerSize)
	o.RetryTimes = cmp.Or(o.RetryTimes, base.RetryTimes)
	o.Strict = o.Strict || base.Strict
	return o
}

// systemContext is the containers/image view of Options.
func (o Options) systemContext() (*types.SystemContext, error) {
	sys := &types.SystemContext{
		AuthFilePath:             o.AuthFile,
		DockerCertPath:           o.CertDir,
		SystemRegistriesConfPath: o.RegistriesConf,
		SignaturePolicyPath:      o.PolicyPath,
		DockerRegistryUserAgent:  userAgent,
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
	policy, err := o.policy(sys)
	if err != nil {
		return nil, err
	}
	return signature.NewPolicyContext(policy)
}

// policy is the trust policy the options name, read from its file.
func (o Options) policy(sys *types.SystemContext) (*signature.Policy, error) {
	if o.InsecurePolicy {
		return &signature.Policy{Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()}}, nil
	}
	policy, err := signature.DefaultPolicy(sys)
	if err != nil {
		return nil, fmt.Errorf("reading the image trust policy (policy.json; --insecure-policy skips it): %w", err)
	}
	return policy, nil
}

// policies reads each trust policy a run's images name once, not once per image. A parsed policy
// is only read by the contexts made from it (signature.NewPolicyContext), so they may share it.
type policies struct {
	mu   sync.Mutex
	read map[policyKey]*signature.Policy
}

type policyKey struct {
	path     string
	insecure bool
}

// context is a policy context of the policy opts name.
func (ps *policies) context(opts Options, sys *types.SystemContext) (*signature.PolicyContext, error) {
	key := policyKey{opts.PolicyPath, opts.InsecurePolicy}
	ps.mu.Lock()
	policy := ps.read[key]
	ps.mu.Unlock()
	if policy == nil {
		var err error
		if policy, err = opts.policy(sys); err != nil {
			return nil, err // not kept: the next image says it again
		}
		ps.mu.Lock()
		if ps.read == nil {
			ps.read = map[policyKey]*signature.Policy{}
		}
		ps.read[key] = policy
		ps.mu.Unlock()
	}
	return signature.NewPolicyContext(policy)
}
