package builder

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/types"
)

// explainTLS adds to a registry connection that failed over TLS what the admin can do about it:
// the usual causes are a plain-HTTP registry (a test or internal one) and a certificate signed by
// a private authority.
func explainTLS(err error, ref types.ImageReference) error {
	host := "the registry"
	if named := ref.DockerReference(); named != nil {
		host = reference.Domain(named)
	}
	var unknownCA x509.UnknownAuthorityError
	var wrongHost x509.HostnameError
	switch {
	// net/http says so in text only (it replaces the tls.RecordHeaderError that found "HTTP/").
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("%s answers over plain HTTP, not HTTPS: if that is meant (a test or internal registry), "+
			"use --tls-verify=false (tls-verify = false in the recipe) or mark it insecure in registries.conf "+
			"([[registry]] location = %q, insecure = true): %w", host, host, err)
	case errors.As(err, &unknownCA):
		return fmt.Errorf("the TLS certificate of %s is signed by an authority this host does not trust: "+
			"put that authority's certificate (ca.crt) into /etc/containers/certs.d/%s/ or into a directory given "+
			"with --cert-dir DIR, or name a CA bundle with SSL_CERT_FILE (--tls-verify=false skips the check: test "+
			"registries only): %w", host, host, err)
	case errors.As(err, &wrongHost):
		return fmt.Errorf("the TLS certificate of %s is not made out to that name: reach the registry by a name "+
			"its certificate holds: %w", host, err)
	}
	return err
}
