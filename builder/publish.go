package builder

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cargohold/cargohold/builder/unpack"
	"github.com/cargohold/cargohold/internal/faultpoint"
	"github.com/cargohold/cargohold/layout"
	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/transports"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
	"golang.org/x/sync/errgroup"
)

// Request is one image to publish.
type Request struct {
	Ref     string   // what the user typed: "docker://reg/x:1", "reg/x:1", "alpine", "oci:/dir:tag"
	Names   []string // extra names for the image in the store, besides the reference's own
	Options *Options // nil: the Publisher's
}

// Action is what a publish did to the store.
type Action string

const (
	Added     Action = "added"     // a new image
	Updated   Action = "updated"   // the image was there; names were added or moved to it
	Unchanged Action = "unchanged" // the store already held exactly this
	Failed    Action = "failed"
)

// Result reports one Request.
type Result struct {
	Ref            string
	Names          []string
	ImageID        string
	ManifestDigest digest.Digest
	Action         Action
	LayersFetched  int
	BytesFetched   int64
	// FilesShared and BytesShared say how much of the fetched layers' data is shared with files the
	// store held (layout.Dedup) instead of written again.
	FilesShared int
	BytesShared int64
	Duration    time.Duration
	Err         error
	// Warnings are things readers may trip over although the publish succeeded (an image too deep
	// for Podman 4.x to mount from this store path); the CLI prints each as "warning: ...".
	Warnings []string
	// Retries are the transient failures that were tried again ("reading … failed (…); trying
	// again in 1s (1 of 3)"), whether or not the image then succeeded.
	Retries []string
}

// Publisher publishes images into one store, holding its writer lock.
type Publisher struct {
	Store   *layout.Store
	Options Options
	// Jobs is how many layers are fetched and unpacked at once, by all images together; 0:
	// DefaultJobs. A small gzip or uncompressed layer (a blob under 16 MiB) takes an eighth of one job.
	Jobs int
	// ImageJobs is how many images PublishAll works on at once; 0: DefaultImageJobs.
	ImageJobs int
	// CopyHardlinksAcrossDirs unpacks hard links into another directory as copies (a store on
	// CVMFS; see unpack.Options).
	CopyHardlinksAcrossDirs bool
	// Progress, if set, receives progress events of every layer (see ProgressEvent). It is called
	// from the goroutines that fetch layers, so it must be safe for concurrent use, and quick.
	Progress func(ProgressEvent)
	// OnRetry, if set, hears of each retry as it happens (ref is the Request's Ref), for someone
	// watching; Result.Retries has them all. Called concurrently, like Progress.
	OnRetry func(ref, msg string)

	flights  layerFlights // a layer needed by several images in flight is fetched once
	tags     tagChecks    // a tag the store holds is checked with one request over a client per registry
	policies policies     // each trust policy is read once
	slots    layerSlots   // Jobs
}

// DefaultJobs overlaps network waits with unpacking without flooding a registry.
const DefaultJobs = 4

// Publish makes the image named by req available in the store under its names. On any error the store
// is left as it was for this image: staged layers are discarded, nothing is recorded. It may run
// concurrently with other Publish calls on the same Publisher (PublishAll does).
func (p *Publisher) Publish(ctx context.Context, req Request) Result {
	return p.publish(ctx, req, nil)
}

// publish is Publish in its turn t (see turn; nil: any time).
func (p *Publisher) publish(ctx context.Context, req Request, t *turn) (res Result) {
	start := time.Now()
	res = Result{Ref: req.Ref}
	retries := &retryNotes{}
	if p.OnRetry != nil {
		retries.live = func(msg string) { p.OnRetry(req.Ref, msg) }
	}
	ctx = withRetryNotes(ctx, retries)
	defer func() {
		res.Retries = retries.list()
		res.Duration = time.Since(start)
		if res.Err != nil {
			res.Action = Failed
			res.Err = fmt.Errorf("%s: %w", req.Ref, res.Err)
		}
	}()
	opts := p.Options
	if req.Options != nil {
		opts = *req.Options
	}
	sys, err := opts.systemContext()
	if err != nil {
		res.Err = err
		return res
	}
	policy, err := p.policies.context(opts, sys)
	if err != nil {
		res.Err = err
		return res
	}
	defer func() { _ = policy.Destroy() }() // frees memory only

	ref, err := parseImageRef(req.Ref)
	if err != nil {
		res.Err = err
		return res
	}
	var pinned storage.Image
	var pinnedNames []string
	present := func() (ok bool) { pinned, pinnedNames, ok = p.pinnedAndPresent(ref, req.Names); return ok }
	if unchanged, err := p.unchangedInTurn(ctx, t, present); err != nil || unchanged {
		res.Names, res.ImageID, res.ManifestDigest, res.Action, res.Err = pinnedNames, pinned.ID, pinned.Digest, Unchanged, err
		return res
	}
	if held, err := p.tagUnchanged(ctx, ref, req.Names, sys, policy, t); err != nil || held.ID != "" {
		res.Names, res.ImageID, res.ManifestDigest, res.Action, res.Err = held.Names, held.ID, held.Digest, Unchanged, err
		return res
	}
	src, err := resolve(ctx, ref, sys, policy, opts.RetryTimes)
	if err != nil {
		res.Err = err
		return res
	}
	defer func() { _ = src.Close() }() // a read-only source
	if res.Names, err = imageNames(src.name(), req.Names); err != nil {
		res.Err = err
		return res
	}
	res.ManifestDigest = src.manifestDigest
	if src.schema1 {
		// The ID derives from the diff IDs, which only unpacking reveals; an image already holding
		// this manifest has it.
		res.ImageID = p.imageWithManifest(src.manifestDigest)
	} else {
		res.ImageID = src.config.Digest.Encoded()
	}
	if warning, err := checkDepth(p.Store, len(src.layers), opts.Strict); err != nil {
		res.Err = err
		return res
	} else if warning != "" {
		res.Warnings = append(res.Warnings, warning)
	}

	// Already there, with this manifest and all its names: nothing to fetch, not even the config.
	held := func() bool { return p.Store.HasManifest(res.ImageID, src.manifestDigest, res.Names) }
	if res.ImageID != "" {
		if unchanged, err := p.unchangedInTurn(ctx, t, held); err != nil || unchanged {
			res.Action, res.Err = Unchanged, err
			return res
		}
	}
	res.Err = p.fetchAndRecord(ctx, src, &res, opts, t)
	return res
}

// tagUnchanged is, for a docker reference to a tag whose name the store holds, the image of the
// store that holds, under all the image's names, the manifest the tag names now, as one HEAD request
// finds (tagChecks): a no-op resync asks the registry nothing more. Its ID is "" when that is not so,
// or cannot be told so: the image is then resolved and compared the image library's way.
func (p *Publisher) tagUnchanged(ctx context.Context, input imageRef, extra []string, sys *types.SystemContext,
	policy *signature.PolicyContext, t *turn) (storage.Image, error) {
	if input.other != nil {
		return storage.Image{}, nil
	}
	refs, _, err := candidates(input, sys)
	if err != nil || len(refs) != 1 {
		return storage.Image{}, nil
	}
	names, err := imageNames(reference.TagNameOnly(refs[0].DockerReference()), extra)
	if err != nil || !p.Store.HasName(names[0]) || !acceptedUnseen(ctx, policy, refs[0]) {
		return storage.Image{}, nil
	}
	d, mimeType, err := p.tags.manifestDigest(ctx, refs[0], sys)
	if err != nil { // the library's path tells what is wrong, if anything is
		return storage.Image{}, nil
	}
	_, platformWanted := wanted(sys)
	if !manifest.MIMETypeIsMultiImage(mimeType) && platformWanted {
		return storage.Image{}, nil // the platform of a single-platform image is checked in its config (checkPlatform)
	}
	var img storage.Image
	present := func() (ok bool) {
		if img, ok = p.Store.ImageWithManifest("", d, names); ok && manifest.MIMETypeIsMultiImage(mimeType) {
			img.Digest, ok = p.heldInstance(img, d, mimeType, names, sys)
		} else if ok {
			img.Digest = d
		}
		return ok
	}
	if unchanged, err := p.unchangedInTurn(ctx, t, present); err != nil || !unchanged {
		return storage.Image{}, err
	}
	img.Names = names
	return img, nil
}

// heldInstance is, of the manifest list with digest list that img holds, the instance this
// request's platform chooses, if img is that instance (publishing under another platform, or with
// another one wanted, picks another).
func (p *Publisher) heldInstance(img storage.Image, list digest.Digest, mimeType string, names []string, sys *types.SystemContext) (digest.Digest, bool) {
	blob, err := p.Store.Manifest(img.ID, list)
	if err != nil {
		return "", false
	}
	parsed, err := manifest.ListFromBlob(blob, mimeType)
	if err != nil {
		return "", false
	}
	instance, err := chooseInstance(parsed, sys)
	if err != nil || !p.Store.HasManifest(img.ID, instance, names) {
		return "", false
	}
	return instance, true
}

// unchangedInTurn says whether present() holds now and still does in t's turn: an image requested
// before this one may take one of its names meanwhile. It waits for the turn only if present() holds
// now, so that images to fetch are fetched at once.
func (p *Publisher) unchangedInTurn(ctx context.Context, t *turn, present func() bool) (bool, error) {
	if !present() {
		return false, nil
	}
	if err := t.wait(ctx); err != nil {
		return false, err
	}
	p.Store.FlushImages() // the images before this one may have queued their records only
	return present(), nil
}

// fetchAndRecord fetches what the store lacks of src and records the image in turn t.
func (p *Publisher) fetchAndRecord(ctx context.Context, src *source, res *Result, opts Options, t *turn) error {
	if src.schema1 {
		return p.publishSchema1(ctx, src, res, opts, t)
	}
	config, err := src.img.ConfigBlob(ctx)
	if err != nil {
		return fmt.Errorf("fetching config %s: %w", src.config.Digest, err)
	}
	ociConfig, err := src.img.OCIConfig(ctx) // the diff IDs as the image library reads them
	if err != nil {
		return fmt.Errorf("parsing config %s: %w", src.config.Digest, err)
	}
	diffIDs := ociConfig.RootFS.DiffIDs
	if len(diffIDs) != len(src.layers) {
		return fmt.Errorf("the manifest lists %d layers but the config %s lists %d diff_ids; the image is malformed",
			len(src.layers), src.config.Digest, len(diffIDs))
	}
	if len(diffIDs) == 0 {
		return errors.New("the image has no layers; Podman cannot run it from an additional store")
	}

	jobs := p.layerJobs(src, diffIDs, res.Ref, opts.RetryTimes)
	uopts := p.unpackOptions(opts)
	defer landAll(jobs) // whatever happens, no image waits for these layers any longer
	if p.Store.CommitsInOrder() {
		if err := p.fetchInOrder(ctx, src, jobs, uopts, res); err != nil {
			return err
		}
	} else {
		if err := p.fetchAll(ctx, src, jobs, uopts); err != nil {
			return err
		}
		// Parents first, so every layer's lower chain is complete before the layer is recorded.
		if err := p.commit(ctx, src, jobs, uopts, res); err != nil {
			return err
		}
	}
	faultpoint.Hit("image-layers-committed")
	return p.record(ctx, t, layout.Image{Config: config, Manifest: src.manifest, List: src.list, Names: res.Names,
		Source: transports.ImageName(src.ref)}, res)
}

// record makes the image, whose layers are all committed, visible under its names, in its turn. It
// queues the record and passes the turn on at once: the next image queues its own behind it, and
// the store writes the records queued together at once (layout.QueueImage).
func (p *Publisher) record(ctx context.Context, t *turn, img layout.Image, res *Result) error {
	if err := t.wait(ctx); err != nil {
		return err
	}
	wait, err := p.Store.QueueImage(img)
	t.pass()
	if err != nil {
		return err
	}
	put, err := wait()
	if err != nil {
		return err
	}
	faultpoint.Hit("image-published")
	switch {
	case !put.Changed:
		res.Action = Unchanged
	case put.New:
		res.Action = Added
	default:
		res.Action = Updated
	}
	return nil
}

// unpackOptions are how this publisher unpacks every layer of an image.
func (p *Publisher) unpackOptions(opts Options) unpack.Options {
	return unpack.Options{MaxSize: opts.MaxLayerSize, CopyHardlinksAcrossDirs: p.CopyHardlinksAcrossDirs}
}

// publishSchema1 publishes a Docker schema 1 image as Podman pulls one: the manifest as it is, no
// config, and a layer for each layer that is not throwaway. Schema 1 lists no diff IDs, so a layer's
// chain ID is known only once it is unpacked, and its child can be staged only then: the layers are
// fetched one after another, all of them (a layer the store turns out to hold is discarded).
func (p *Publisher) publishSchema1(ctx context.Context, src *source, res *Result, opts Options, t *turn) error {
	if len(src.layers) == 0 {
		return errors.New("the image has no layers; Podman cannot run it from an additional store")
	}
	uopts := p.unpackOptions(opts)
	var diffIDs []digest.Digest
	parent := ""
	for _, blob := range src.layers {
		j := &layerJob{blob: blob, parent: parent, retries: opts.RetryTimes,
			progress: progress{fn: p.Progress, ref: res.Ref, layer: blob.Digest, size: blob.Size}}
		if err := p.fetchJob(ctx, src, j, uopts); err != nil {
			discard([]*layerJob{j})
			return err
		}
		if p.Store.HasLayer(j.id) {
			discard([]*layerJob{j})
		} else if err := p.commit(ctx, src, []*layerJob{j}, uopts, res); err != nil {
			return err
		}
		diffIDs = append(diffIDs, j.meta.DiffID)
		parent = j.id
	}
	faultpoint.Hit("image-layers-committed")

	img := layout.Image{DiffIDs: diffIDs, Manifest: src.manifest, List: src.list, Names: res.Names, Source: transports.ImageName(src.ref)}
	var err error
	if res.ImageID, err = img.ID(); err != nil {
		return err
	}
	return p.record(ctx, t, img, res)
}

// imageWithManifest is the ID of an image of the store that holds the manifest d, "" if none does.
func (p *Publisher) imageWithManifest(d digest.Digest) string {
	img, _ := p.Store.ImageWithManifest("", d, nil)
	return img.ID
}

// layerJobs lists the image's layers the store lacks, in order from the base up. Of a layer that
// another image of this run is fetching already, the job waits for that image (layerJob.wait).
func (p *Publisher) layerJobs(src *source, diffIDs []digest.Digest, ref string, retries int) []*layerJob {
	ids := layout.ChainIDs(diffIDs)
	have, lead, wait := p.flights.plan(ids, p.Store.HasLayer)
	var jobs []*layerJob
	for i, id := range ids {
		progress := progress{fn: p.Progress, ref: ref, layer: src.layers[i].Digest, size: src.layers[i].Size}
		if have[i] {
			progress.send(LayerSkipped, 0)
			continue
		}
		j := &layerJob{blob: src.layers[i], diffID: diffIDs[i], id: id, retries: retries, progress: progress,
			lead: lead[i], wait: wait[i]}
		if i > 0 {
			j.parent = ids[i-1]
		}
		jobs = append(jobs, j)
	}
	return jobs
}

// fetchAll fetches and unpacks the jobs this image leads concurrently (the others wait until they
// are committed: see commit); on the first error the others are cancelled and every staged layer
// of this image is discarded.
func (p *Publisher) fetchAll(ctx context.Context, src *source, jobs []*layerJob, uopts unpack.Options) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, j := range jobs {
		if j.wait == nil {
			g.Go(func() error { return p.fetchJob(gctx, src, j, uopts) })
		}
	}
	if err := g.Wait(); err != nil {
		discard(jobs)
		return err
	}
	return nil
}

// fetchJob fetches one layer in one of the Publisher's layer slots.
func (p *Publisher) fetchJob(ctx context.Context, src *source, j *layerJob, uopts unpack.Options) error {
	release, err := p.slots.acquire(ctx, p.Jobs, j.blob)
	if err != nil {
		return err
	}
	defer release()
	return j.fetch(ctx, src.src, p.Store, uopts)
}

// fetchInOrder fetches, unpacks and commits one layer after another: a vfs layer is unpacked onto a
// copy of its parent's tree, so the parent must be committed first. If a layer fails, the ones
// before it stay committed but unused: a retry reuses them, gc removes them.
func (p *Publisher) fetchInOrder(ctx context.Context, src *source, jobs []*layerJob, uopts unpack.Options, res *Result) error {
	for i, j := range jobs {
		if j.wait == nil {
			if err := p.fetchJob(ctx, src, j, uopts); err != nil {
				discard(jobs)
				return err
			}
		}
		if err := p.commit(ctx, src, jobs[i:i+1], uopts, res); err != nil {
			return err
		}
	}
	return nil
}

// commit commits the fetched jobs in order, parents first. A job waiting for another image's fetch
// of its layer waits here, and fetches the layer itself if that image gave up.
func (p *Publisher) commit(ctx context.Context, src *source, jobs []*layerJob, uopts unpack.Options, res *Result) error {
	for _, j := range jobs {
		if j.wait != nil {
			done, err := p.awaitLayer(ctx, src, j, uopts)
			if err != nil {
				discard(jobs)
				return err
			}
			if done {
				continue
			}
		}
		if err := ctx.Err(); err != nil { // a stopped run records nothing more
			discard(jobs)
			return err
		}
		err := j.hideLower()
		if err == nil {
			err = j.shareByLinks()
		}
		if err != nil {
			discard(jobs)
			return fmt.Errorf("layer %s: %w", j.blob.Digest, err)
		}
		if err := p.Store.CommitLayer(j.staged, j.meta); err != nil {
			discard(jobs)
			return fmt.Errorf("committing layer %s: %w", j.blob.Digest, err)
		}
		j.staged = nil
		j.lead.land()
		res.LayersFetched++
		res.BytesFetched += j.fetched
		res.FilesShared += j.unpacked.SharedFiles
		res.BytesShared += j.unpacked.SharedBytes
	}
	return nil
}

// awaitLayer waits for the image that fetches j's layer. done: the layer is in the store now;
// otherwise that image gave up, and j has fetched (staged) the layer itself, ready to commit.
func (p *Publisher) awaitLayer(ctx context.Context, src *source, j *layerJob, uopts unpack.Options) (done bool, err error) {
	for j.wait != nil {
		if err := j.wait.await(ctx); err != nil {
			return false, err
		}
		if p.Store.HasLayer(j.id) {
			j.progress.send(LayerSkipped, 0)
			return true, nil
		}
		j.lead, j.wait = p.flights.lead(j.id)
	}
	return false, p.fetchJob(ctx, src, j, uopts)
}

func discard(jobs []*layerJob) {
	for _, j := range jobs {
		if j.staged != nil {
			_ = j.staged.Discard() // what is left is a leftover the next Open removes
			j.staged = nil
		}
	}
	landAll(jobs)
}

// landAll ends the flights of the layers the jobs lead: committed or not, nobody waits for them.
func landAll(jobs []*layerJob) {
	for _, j := range jobs {
		j.lead.land()
	}
}

// pinnedAndPresent: a fully qualified reference by digest ("registry/name@sha256:…") names content
// that cannot change, so once the store holds that manifest under all the names, not even the
// registry is asked.
func (p *Publisher) pinnedAndPresent(ref imageRef, extra []string) (storage.Image, []string, bool) {
	pinned, ok := ref.pinned()
	if !ok {
		return storage.Image{}, nil, false
	}
	names, err := imageNames(pinned, extra)
	if err != nil {
		return storage.Image{}, nil, false
	}
	img, ok := p.Store.ImageWithManifest("", pinned.Digest(), names)
	if !ok {
		return storage.Image{}, nil, false
	}
	return img, names, true
}

// imageNames is the reference's own name (as Podman would record it; nil for references that carry
// none) followed by the extra names, normalised the same way ("alpine" → "docker.io/library/alpine:latest").
func imageNames(own reference.Named, extra []string) ([]string, error) {
	var names []string
	if own != nil {
		names = append(names, own.String())
	}
	for _, e := range extra {
		named, err := parseName(e)
		if err != nil {
			return nil, fmt.Errorf("extra name %q: %w", e, err)
		}
		if n := named.String(); !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return nil, errors.New("this reference carries no image name; give the image a name (recipe names = [...] or --name)")
	}
	return names, nil
}
