package builder

import (
	"context"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/pkg/shortnames"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/transports"
	"go.podman.io/image/v5/types"
)

// A source is one image resolved to a single platform instance and accepted by the trust policy:
// everything needed to decide whether the store already has it, and to fetch it if not.
type source struct {
	ref            types.ImageReference // the reference that answered
	src            types.ImageSource
	img            types.Image // the chosen platform instance
	manifest       []byte
	manifestDigest digest.Digest
	list           []byte // the manifest list (image index) it was chosen from, if any
	listDigest     digest.Digest
	config         types.BlobInfo   // Digest "" for a Docker schema 1 image
	layers         []types.BlobInfo // the layers the store holds (schema 1: not the throwaway ones)
	schema1        bool             // a Docker schema 1 image: no config, diff IDs learned while unpacking
}

func (s *source) Close() error { return s.src.Close() }

// name is the name Podman would record for the image pulled by this reference, e.g.
// "docker.io/library/alpine:3.20"; nil for transports that carry no name (oci: without one).
func (s *source) name() reference.Named {
	named := s.ref.DockerReference()
	if named == nil {
		return nil
	}
	return reference.TagNameOnly(named)
}

// resolve turns what a user typed (parseImageRef) into one image instance. A docker reference's
// short names go through registries.conf (aliases, unqualified-search registries) like `podman pull`,
// trying candidates in order. Other transports ("oci:", "docker-archive:", ...) are taken as written.
// A transient failure of a candidate is retried up to retries times.
func resolve(ctx context.Context, input imageRef, sys *types.SystemContext, policy *signature.PolicyContext, retries int) (*source, error) {
	refs, resolved, err := candidates(input, sys)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, ref := range refs {
		var s *source
		err := retry(ctx, retries, "reading "+transports.ImageName(ref), func() (err error) {
			s, err = open(ctx, ref, sys, policy)
			return err
		})
		if err == nil {
			return s, nil
		}
		errs = append(errs, explainTLS(explainAuth(err, ref, sys), ref))
	}
	if resolved != nil {
		return nil, resolved.FormatPullErrors(errs)
	}
	return nil, errors.Join(errs...)
}

// candidates are the references to try, in order: another transport's as written; for a docker
// reference, what registries.conf makes of it (one, unless it is a short name).
func candidates(input imageRef, sys *types.SystemContext) ([]types.ImageReference, *shortnames.Resolved, error) {
	if input.other != nil {
		return []types.ImageReference{input.other}, nil, nil
	}
	resolved, err := shortnames.Resolve(sys, input.name)
	if err != nil {
		return nil, nil, err
	}
	var refs []types.ImageReference
	for _, c := range resolved.PullCandidates {
		ref, err := docker.NewReference(c.Value)
		if err != nil {
			return nil, nil, err
		}
		refs = append(refs, ref)
	}
	return refs, resolved, nil
}

// open fetches the manifest (one request for a single-platform image), picks the platform instance
// from an image index, and checks the trust policy before anything is fetched.
func open(ctx context.Context, ref types.ImageReference, sys *types.SystemContext, policy *signature.PolicyContext) (_ *source, err error) {
	src, err := ref.NewImageSource(ctx, sys)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = src.Close() // err says what went wrong
		}
	}()
	top, mimeType, err := src.GetManifest(ctx, nil)
	if err != nil {
		return nil, err
	}
	if allowed, err := policy.IsRunningImageAllowed(ctx, image.UnparsedInstance(src, nil)); err != nil {
		return nil, fmt.Errorf("rejected by the trust policy (policy.json): %w", err)
	} else if !allowed {
		return nil, errors.New("rejected by the trust policy (policy.json)")
	}
	s := &source{ref: ref, src: src}
	var instance *digest.Digest
	if manifest.MIMETypeIsMultiImage(mimeType) {
		list, err := manifest.ListFromBlob(top, mimeType)
		if err != nil {
			return nil, fmt.Errorf("parsing the image index: %w", err)
		}
		chosen, err := chooseInstance(list, sys)
		if err != nil {
			return nil, err
		}
		instance = &chosen
		s.list = top
		if s.listDigest, err = manifest.Digest(top); err != nil {
			return nil, err
		}
	}
	if s.img, err = image.FromUnparsedImage(ctx, sys, image.UnparsedInstance(src, instance)); err != nil {
		return nil, err
	}
	if instance == nil {
		if err := checkPlatform(ctx, s.img, sys); err != nil {
			return nil, err
		}
	}
	if s.manifest, _, err = s.img.Manifest(ctx); err != nil {
		return nil, err
	}
	if s.manifestDigest, err = manifest.Digest(s.manifest); err != nil {
		return nil, err
	}
	s.config = s.img.ConfigInfo()
	s.layers = s.img.LayerInfos()
	if s.config.Digest == "" {
		if err := s.readSchema1(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// readSchema1 prepares a Docker schema 1 image, the only kind without a config: its manifest is kept
// as it is, as Podman keeps it, and only its layers that are not throwaway are fetched, as Podman
// creates no layer for the others.
func (s *source) readSchema1() error {
	mt := manifest.GuessMIMEType(s.manifest)
	if mt != manifest.DockerV2Schema1SignedMediaType && mt != manifest.DockerV2Schema1MediaType {
		return fmt.Errorf("the image has no config and its manifest (%s) is not Docker schema 1", mt)
	}
	m, err := manifest.Schema1FromManifest(s.manifest)
	if err != nil {
		return fmt.Errorf("parsing the schema 1 manifest: %w", err)
	}
	s.schema1 = true
	s.layers = nil
	for _, l := range m.LayerInfos() {
		if !l.EmptyLayer {
			s.layers = append(s.layers, l.BlobInfo)
		}
	}
	return nil
}
