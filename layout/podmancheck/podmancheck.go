// Package podmancheck reads a store the way Podman does, with go.podman.io/storage, and checks that
// every image in it is usable: for layout.Check (the "check" command) and for tests (through
// testimage.VerifyStore).
//
// It is independent of package layout on purpose, and must stay so: it shares none of layout's code
// (paths, chain IDs, record readers, permission walks), so that a mistake in how layout writes the
// format cannot hide from the check that reads it back the way Podman does.
package podmancheck

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cargohold/cargohold/internal/ctxio"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/manifest"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
	"go.podman.io/storage/pkg/archive"
)

// DriverOptions are the options of driver ("overlay" or "vfs") that make storeDir an additional
// (read-only) image store of a scratch store, without mounting anything: for overlay,
// skip_mount_home avoids the bind mount of the driver home, and a mount_program (when fuse-overlayfs
// is installed) avoids the native overlay probe, which needs privileges and a filesystem overlay can
// sit on.
func DriverOptions(driver, storeDir string) []string {
	if driver == "vfs" {
		return []string{"vfs.imagestore=" + storeDir}
	}
	opts := []string{"overlay.imagestore=" + storeDir, "overlay.skip_mount_home=true"}
	if p, err := exec.LookPath("fuse-overlayfs"); err == nil {
		opts = append(opts, "overlay.mount_program="+p)
	}
	return opts
}

// Options of Check.
type Options struct {
	// Deep regenerates every layer's diff from diff/ and its tar-split, as "podman save/push" do,
	// and compares it with the recorded diff ID and size. It reads every file of the store.
	Deep bool
	// Driver is the store's driver, "overlay" ("" means the same) or "vfs".
	Driver string
}

// A Problem is one thing in a store that Podman would trip over.
type Problem struct {
	Image   string // the image ID and names ("<id> [name ...]") it concerns, if any
	Layer   string // the layer ID it concerns, if any
	Message string
}

func (p Problem) String() string {
	s := p.Message
	if p.Layer != "" {
		s = "layer " + p.Layer + ": " + s
	}
	if p.Image != "" {
		s = "image " + p.Image + ": " + s
	}
	return s
}

// Check opens storeDir with the storage library as an additional image store of a scratch store
// (Podman's additionalimagestores) and checks that:
//   - the lock files exist and everything but the layers' contents is readable by any user (a shared
//     store is read by non-root users);
//   - it lists exactly the images of images.json (a store Podman cannot read shows none), each name
//     resolving to its image;
//   - the image library opens and inspects each image (manifest, metadata, config) and the config's
//     diff IDs lead, as chain IDs, to the recorded layers (a Docker schema 1 image has no config: the
//     image ID must be the one the image library derives from its manifest and its layers' diff IDs);
//   - every big-data item reads back with its recorded size and digest, and the config (but for
//     schema 1) and a manifest are there;
//   - every layer of every image exists, has its tar-split data, and (overlay) its link, lower and
//     overlay/l/ symlinks resolve as older Podman (4.3, whose storage library predates lower-layers)
//     follows them to mount the image;
//   - with opts.Deep, regenerating each layer's diff from diff/ and tar-split yields the recorded
//     diff digest and size, so "podman save/push" reproduce the registry's layers.
//
// It returns every problem found, each naming the image or layer at fault; the error is for a check
// that could not run at all, or ctx's cause when ctx ends first. Check writes only to a temporary
// directory.
func Check(ctx context.Context, storeDir string, opts Options) ([]Problem, error) {
	storeDir, err := filepath.Abs(storeDir)
	if err != nil {
		return nil, err
	}
	driver := opts.Driver
	if driver == "" {
		driver = "overlay"
	}
	c := &checker{dir: storeDir, driver: driver, deep: opts.Deep, checked: map[string]bool{}}
	// Before the storage library opens the store: it would create missing lock files, which a
	// non-root reader cannot, and then show no images at all.
	if missing := c.checkReadable(); missing {
		return c.problems, nil
	}
	want, err := recordedImages(storeDir, driver)
	if err != nil {
		return nil, err
	}

	tmp, err := os.MkdirTemp("", "cargohold-verify-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(tmp) }() // scratch store of the check
	store, err := storage.GetStore(storage.StoreOptions{
		RunRoot:            filepath.Join(tmp, "run"),
		GraphRoot:          filepath.Join(tmp, "root"),
		GraphDriverName:    driver,
		GraphDriverOptions: DriverOptions(driver, storeDir),
	})
	if err != nil {
		c.add("", "", fmt.Sprintf("the storage library cannot open the store: %v", err))
		return c.problems, nil
	}
	// Shutdown's error is ignored: it only concerns the scratch store, whose driver home was never
	// mounted, and as a non-root user the umount it tries anyway always fails with EPERM.
	defer func() { _, _ = store.Shutdown(true) }()

	all, err := store.Images()
	if err != nil {
		c.add("", "", fmt.Sprintf("the storage library cannot list the images (Podman shows none): %v", err))
		return c.problems, nil
	}
	var images []storage.Image
	for _, img := range all {
		if img.ReadOnly { // the scratch store's own images are none; this keeps the count honest
			images = append(images, img)
		}
	}
	if len(images) != len(want) {
		c.add("", "", fmt.Sprintf("images.json records %d images but the storage library lists %d (missing or unreadable lock files?)",
			len(want), len(images)))
	}
	// One read of the layers for every lookup: asking the library for each layer of each image
	// locks and stats layers.json every time, which made the check of a thousand images slow.
	layers, err := store.Layers()
	if err != nil {
		c.add("", "", fmt.Sprintf("the storage library cannot list the layers (Podman runs nothing): %v", err))
		return c.problems, nil
	}
	c.layers = map[string]*storage.Layer{}
	for i := range layers {
		c.layers[layers[i].ID] = &layers[i]
	}
	for _, img := range images {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		c.checkImage(ctx, store, img)
	}
	if ctx.Err() != nil { // a deep check reading a layer stops with a problem: the cause is the answer
		return nil, context.Cause(ctx)
	}
	return c.problems, nil
}

// layer is the storage library's record of layer id, as store.Layer reads it.
func (c *checker) layer(id string) (*storage.Layer, error) {
	if l, ok := c.layers[id]; ok {
		return l, nil
	}
	return nil, storage.ErrLayerUnknown
}

type checker struct {
	dir      string
	driver   string
	deep     bool
	checked  map[string]bool // layers are shared between images; check each once
	layers   map[string]*storage.Layer
	links    map[string]resolvedLink // diffOf's answers, by link
	problems []Problem
}

func (c *checker) add(image, layer, msg string) {
	c.problems = append(c.problems, Problem{Image: image, Layer: layer, Message: msg})
}

func recordedImages(storeDir, driver string) ([]storage.Image, error) {
	p := filepath.Join(storeDir, driver+"-images", "images.json")
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var images []storage.Image
	if err := json.Unmarshal(data, &images); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return images, nil
}

func (c *checker) checkImage(ctx context.Context, store storage.Store, img storage.Image) {
	image := fmt.Sprintf("%s %v", img.ID, img.Names)
	fail := func(format string, args ...any) { c.add(image, "", fmt.Sprintf(format, args...)) }
	for _, name := range img.Names {
		got, err := store.Image(name)
		if err != nil {
			fail("looking up name %q: %v", name, err)
		} else if got.ID != img.ID {
			fail("name %q resolves to image %s", name, got.ID)
		}
	}

	for _, key := range img.BigDataNames {
		if err := checkBigData(store, img, key); err != nil {
			fail("%v", err)
		}
	}
	if !slices.Contains(img.BigDataNames, "sha256:"+img.ID) && !isSchema1(store, img) {
		fail("the image config (big data \"sha256:<image ID>\") is missing")
	}
	if !slices.Contains(img.BigDataNames, storage.ImageDigestBigDataKey) &&
		!slices.Contains(img.BigDataNames, storage.ImageDigestManifestBigDataNamePrefix+"-"+img.Digest.String()) {
		fail("the image has no manifest big data")
	}

	if img.TopLayer == "" {
		fail("the image has no layers")
		return
	}
	var chain []*storage.Layer // top first
	for id := img.TopLayer; id != ""; {
		layer, err := c.layer(id)
		if err != nil {
			fail("layer %s: %v (Podman cannot run it)", id, err)
			return
		}
		if slices.ContainsFunc(chain, func(l *storage.Layer) bool { return l.ID == id }) {
			fail("the parent chain of its layers loops at layer %s", id)
			return
		}
		chain = append(chain, layer)
		id = layer.Parent
	}
	if err := checkAsImage(ctx, store, img, chain); err != nil {
		fail("%v", err)
	}
	for _, layer := range chain {
		if !c.checked[layer.ID] {
			c.checked[layer.ID] = true
			for _, err := range c.checkLayer(ctx, store, layer) {
				c.add(image, layer.ID, err.Error())
			}
		}
	}
}

func checkBigData(store storage.Store, img storage.Image, key string) error {
	data, err := store.ImageBigData(img.ID, key)
	if err != nil {
		return fmt.Errorf("reading big data %q: %w", key, err)
	}
	if size, ok := img.BigDataSizes[key]; !ok || size != int64(len(data)) {
		return fmt.Errorf("big data %q has %d bytes, images.json records %d", key, len(data), size)
	}
	want, ok := img.BigDataDigests[key]
	if !ok {
		return fmt.Errorf("big data %q has no recorded digest (tagging the image would fail)", key)
	}
	got := digest.Canonical.FromBytes(data)
	if strings.HasPrefix(key, storage.ImageDigestManifestBigDataNamePrefix) {
		if got, err = manifest.Digest(data); err != nil {
			return fmt.Errorf("big data %q: %w", key, err)
		}
	}
	if got != want {
		return fmt.Errorf("big data %q has digest %s, images.json records %s", key, got, want)
	}
	return nil
}

// isSchema1 says whether img's manifest is a Docker schema 1 manifest: such an image has no config
// item in a store, as the image library records it (storage_dest.go).
func isSchema1(store storage.Store, img storage.Image) bool {
	data, err := store.ImageBigData(img.ID, storage.ImageDigestBigDataKey)
	if err != nil {
		return false // reported as a missing manifest
	}
	mt := manifest.GuessMIMEType(data)
	return mt == manifest.DockerV2Schema1SignedMediaType || mt == manifest.DockerV2Schema1MediaType
}

// checkAsImage opens the image through the image library's storage transport, as Podman does to
// inspect, run or push it (manifest, metadata and config are parsed there), and checks that the
// config's diff IDs lead, as chain IDs, to exactly the recorded layers.
//
// It opens the image's source and parses it (image.FromSource) rather than calling the reference's
// NewImage, which does that and then sums the sizes of the big data and of the layers, asking the
// storage library for each separately (a lock and a reload check each: a third of the check of a
// thousand images). Those sizes can fail Podman only if a layer is missing or has no known size,
// which sizesKnown checks on the records already read.
func checkAsImage(ctx context.Context, store storage.Store, img storage.Image, chain []*storage.Layer) error {
	if err := sizesKnown(chain); err != nil {
		return err
	}
	ref, err := istorage.Transport.NewStoreReference(store, nil, img.ID)
	if err != nil {
		return err
	}
	src, err := ref.NewImageSource(ctx, nil)
	if err != nil {
		return fmt.Errorf("opening it as Podman does: %w", err)
	}
	ic, err := image.FromSource(ctx, nil, src)
	if err != nil {
		_ = src.Close() // err is the news
		return fmt.Errorf("opening it as Podman does: %w", err)
	}
	defer func() { _ = ic.Close() }() // closes src
	if _, err := ic.Inspect(ctx); err != nil {
		return fmt.Errorf("inspecting it as Podman does: %w", err)
	}
	data, mimeType, err := ic.Manifest(ctx)
	if err != nil {
		return fmt.Errorf("reading its manifest: %w", err)
	}
	var diffIDs []digest.Digest
	if mimeType == manifest.DockerV2Schema1SignedMediaType || mimeType == manifest.DockerV2Schema1MediaType {
		diffIDs, err = schema1DiffIDs(img, data, chain)
	} else {
		diffIDs, err = configDiffIDs(ctx, ic, chain)
	}
	if err != nil {
		return err
	}
	parent := ""
	for i, diffID := range diffIDs {
		layer := chain[len(chain)-1-i]
		id := diffID.Encoded()
		if parent != "" {
			id = digest.Canonical.FromString(parent + "+" + diffID.Encoded()).Encoded()
		}
		if layer.ID != id || layer.UncompressedDigest != diffID {
			return fmt.Errorf("layer %d of the config (diff ID %s, chain ID %s) is recorded as layer %s with diff ID %s",
				i, diffID, id, layer.ID, layer.UncompressedDigest)
		}
		parent = id
	}
	return nil
}

// sizesKnown fails as the image library's size of an image (podman images, inspect) does: for a
// layer whose uncompressed size cannot be known.
func sizesKnown(chain []*storage.Layer) error {
	for _, l := range chain {
		if (l.TOCDigest == "" && l.UncompressedDigest == "") || (l.TOCDigest == "" && l.UncompressedSize < 0) {
			return fmt.Errorf("layer %s has no known size: Podman cannot size the image", l.ID)
		}
	}
	return nil
}

// configDiffIDs are the diff IDs of the image's config, which lists as many as the manifest has
// layers and the store has layers in the image's chain.
func configDiffIDs(ctx context.Context, ic types.ImageCloser, chain []*storage.Layer) ([]digest.Digest, error) {
	config, err := ic.OCIConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("parsing its config: %w", err)
	}
	diffIDs := config.RootFS.DiffIDs
	if n := len(ic.LayerInfos()); n != len(diffIDs) || n != len(chain) {
		return nil, fmt.Errorf("the manifest lists %d layers, the config %d diff IDs, the store %d layers", n, len(diffIDs), len(chain))
	}
	return diffIDs, nil
}

// schema1DiffIDs are the diff IDs of a Docker schema 1 image's layers. Schema 1 records none, so
// they are the store's (base first); the image library derives the image ID from them
// (Schema1.ImageID), and the store holds a layer for every manifest layer that is not throwaway.
func schema1DiffIDs(img storage.Image, data []byte, chain []*storage.Layer) ([]digest.Digest, error) {
	m, err := manifest.Schema1FromManifest(data)
	if err != nil {
		return nil, fmt.Errorf("parsing its schema 1 manifest: %w", err)
	}
	layers := slices.DeleteFunc(m.LayerInfos(), func(l manifest.LayerInfo) bool { return l.EmptyLayer })
	if len(layers) != len(chain) {
		return nil, fmt.Errorf("the schema 1 manifest lists %d layers that are not throwaway, the store %d layers", len(layers), len(chain))
	}
	var diffIDs []digest.Digest
	for _, layer := range slices.Backward(chain) {
		diffIDs = append(diffIDs, layer.UncompressedDigest)
	}
	if id, err := m.ImageID(diffIDs); err != nil {
		return nil, fmt.Errorf("deriving its image ID from the schema 1 manifest: %w", err)
	} else if id != img.ID {
		return nil, fmt.Errorf("the image library derives image ID %s from the schema 1 manifest and the layers' diff IDs", id)
	}
	return diffIDs, nil
}

func (c *checker) checkLayer(ctx context.Context, store storage.Store, layer *storage.Layer) []error {
	var errs []error
	if c.driver == "overlay" { // vfs layers are whole trees: nothing links them
		if err := c.checkLowers(layer); err != nil {
			errs = append(errs, err)
		}
	}
	if layer.UncompressedDigest == "" {
		return append(errs, errors.New("no diff-digest recorded"))
	}
	// Without tar-split data the library silently regenerates a different tar: say so plainly.
	if _, err := os.Stat(filepath.Join(c.dir, c.driver+"-layers", layer.ID+".tar-split.gz")); err != nil {
		return append(errs, fmt.Errorf("no tar-split data, so podman save/push would not reproduce the layer: %w", err))
	}
	if !c.deep {
		return errs
	}
	uncompressed := archive.Uncompressed // by default Diff recompresses as the layer was pulled
	rc, err := store.Diff("", layer.ID, &storage.DiffOptions{Compression: &uncompressed})
	if err != nil {
		return append(errs, fmt.Errorf("regenerating its diff: %w", err))
	}
	h := sha256.New()
	n, err := io.Copy(h, ctxio.Reader(ctx, rc))
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return append(errs, fmt.Errorf("regenerating its diff: %w", err))
	}
	got := digest.NewDigest(digest.SHA256, h)
	if got != layer.UncompressedDigest || n != layer.UncompressedSize {
		errs = append(errs, fmt.Errorf("regenerated diff has digest %s and %d bytes, layers.json records %s and %d bytes (damaged layer files or tar-split)",
			got, n, layer.UncompressedDigest, layer.UncompressedSize))
	}
	return errs
}

// parentChain is the IDs of layer's ancestors as the storage library records them, nearest first.
func (c *checker) parentChain(layer *storage.Layer) ([]string, error) {
	var chain []string
	for p := layer.Parent; p != ""; {
		if slices.Contains(chain, p) || p == layer.ID {
			return nil, fmt.Errorf("the parent chain loops at layer %s", p)
		}
		chain = append(chain, p)
		parent, err := c.layer(p)
		if err != nil {
			return nil, fmt.Errorf("ancestor %s: %w", p, err)
		}
		p = parent.Parent
	}
	return chain, nil
}

// checkLowers follows link, overlay/l/ and lower the way the overlay driver did before lower-layers
// existed (Podman 4.3 still does), and checks lower-layers against the chain in layers.json.
func (c *checker) checkLowers(layer *storage.Layer) error {
	dir := filepath.Join(c.dir, "overlay", layer.ID)
	link, err := os.ReadFile(filepath.Join(dir, "link"))
	if err != nil {
		return err
	}
	if id, err := c.diffOf(filepath.Join("l", string(link))); err != nil {
		return fmt.Errorf("its link l/%s does not lead to its diff dir: %w", link, err)
	} else if id != layer.ID {
		return fmt.Errorf("its link l/%s leads to the diff dir of layer %s", link, id)
	}

	chain, err := c.parentChain(layer)
	if err != nil {
		return err
	}

	lower, err := os.ReadFile(filepath.Join(dir, "lower"))
	if len(chain) == 0 {
		if err == nil {
			return errors.New("a base layer has a lower file")
		}
		if fi, err := os.Stat(filepath.Join(dir, "empty")); err != nil || !fi.IsDir() {
			return errors.New("a base layer lacks its empty/ dir")
		}
		return nil
	}
	if err != nil {
		return err
	}
	var viaLinks []string
	for _, l := range strings.Split(string(lower), ":") {
		id, err := c.diffOf(l)
		if err != nil {
			return fmt.Errorf("lower entry %q: %w", l, err)
		}
		viaLinks = append(viaLinks, id)
	}
	if !slices.Equal(viaLinks, chain) {
		return fmt.Errorf("lower resolves to layers %v, layers.json's parent chain is %v", viaLinks, chain)
	}
	lowerLayers, err := os.ReadFile(filepath.Join(dir, "lower-layers"))
	if err != nil {
		return err
	}
	if got := strings.Split(string(lowerLayers), ":"); !slices.Equal(got, chain) {
		return fmt.Errorf("lower-layers lists %v, layers.json's parent chain is %v", got, chain)
	}
	return nil
}

// diffOf is the ID of the layer whose diff dir the link (relative to overlay/: "l/<short>") leads to.
// Links are resolved once each: every layer's lower file names its whole chain, so the links of base
// layers shared by many images would otherwise be followed again for every layer above them.
func (c *checker) diffOf(link string) (string, error) {
	if r, ok := c.links[link]; ok {
		return r.id, r.err
	}
	id, err := c.resolveLink(link)
	if c.links == nil {
		c.links = map[string]resolvedLink{}
	}
	c.links[link] = resolvedLink{id, err}
	return id, err
}

type resolvedLink struct {
	id  string
	err error
}

func (c *checker) resolveLink(link string) (string, error) {
	overlay := filepath.Join(c.dir, "overlay")
	target, err := filepath.EvalSymlinks(filepath.Join(overlay, link))
	if err != nil {
		return "", err
	}
	rel, err := filepath.Rel(overlay, target)
	if err != nil || filepath.Base(rel) != "diff" || filepath.Dir(filepath.Dir(rel)) != "." {
		return "", fmt.Errorf("%s points to %s, not to a layer's diff dir", link, target)
	}
	return filepath.Dir(rel), nil
}

// isLayerFiles says whether the dir p holds a layer's files (overlay/<id>/diff, vfs/dir/<id>), whose
// modes are the image's own.
func (c *checker) isLayerFiles(p string) bool {
	if c.driver == "vfs" {
		return filepath.Dir(p) == filepath.Join(c.dir, "vfs", "dir")
	}
	return filepath.Base(p) == "diff" && filepath.Dir(filepath.Dir(p)) == filepath.Join(c.dir, "overlay")
}

// maxUnreadable bounds how many unreadable paths are reported one by one.
const maxUnreadable = 20

// checkReadable checks that the lock files exist and that every dir of the store is a+rx and every
// file a+r, except inside the layers' diff dirs, whose modes are the image's own. missingLocks says
// the storage library must not open the store (it would create the lock files).
func (c *checker) checkReadable() (missingLocks bool) {
	for _, f := range []string{c.driver + "-layers/layers.lock", c.driver + "-images/images.lock"} {
		fi, err := os.Lstat(filepath.Join(c.dir, f))
		if err != nil {
			c.add("", "", fmt.Sprintf("%s: Podman shows no images without it: %v", f, err))
			missingLocks = true
		} else if !fi.Mode().IsRegular() {
			c.add("", "", fmt.Sprintf("%s/%s is not a regular file", c.dir, f))
			missingLocks = true
		}
	}
	unreadable := 0
	err := filepath.WalkDir(c.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			c.add("", "", err.Error())
			if d != nil && d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Name() == ".cargohold" && filepath.Dir(p) == c.dir {
			return filepath.SkipDir // the writer's own state; Podman never reads it
		}
		if d.IsDir() && c.isLayerFiles(p) {
			return filepath.SkipDir
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil // removed meanwhile (a publish is running)
		}
		want := fs.FileMode(0o444)
		if d.IsDir() {
			want = 0o555
		}
		if fi.Mode().Perm()&want != want {
			if unreadable++; unreadable <= maxUnreadable {
				c.add("", "", fmt.Sprintf("%s has mode %o: other users cannot read it", p, fi.Mode().Perm()))
			}
		}
		return nil
	})
	if err != nil {
		c.add("", "", err.Error())
	}
	if unreadable > maxUnreadable {
		c.add("", "", fmt.Sprintf("%d more paths other users cannot read", unreadable-maxUnreadable))
	}
	return missingLocks
}
