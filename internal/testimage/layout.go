package testimage

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Compression of a layer blob.
type Compression int

const (
	Uncompressed Compression = iota
	Gzip
	Zstd
)

func (c Compression) String() string {
	switch c {
	case Uncompressed:
		return "none"
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	}
	return fmt.Sprintf("Compression(%d)", int(c))
}

// MediaType is the OCI layer media type for c.
func (c Compression) MediaType() string {
	switch c {
	case Gzip:
		return v1.MediaTypeImageLayerGzip
	case Zstd:
		return v1.MediaTypeImageLayerZstd
	}
	return v1.MediaTypeImageLayer
}

// Layer is one image layer: its tar entries, in order, and how the blob is
// compressed.
type Layer struct {
	Entries []Entry
	// Raw, if set, is the layer's uncompressed tar stream as is, instead of Entries: for streams
	// that archive/tar refuses to write (crafted headers).
	Raw []byte
	// Trailer is written after the end-of-archive blocks, inside the blob: bytes a tar reader
	// never sees but that count in the diff ID (some writers leave padding or garbage there).
	Trailer     []byte
	Compression Compression
	// CreatedBy is the history entry's created_by text.
	CreatedBy string
}

// Image is what WriteLayout writes. Zero values get defaults: Created =
// Epoch, OS = "linux", Architecture = runtime.GOARCH (the host's, so Podman
// runs it without a platform warning), Env = a standard PATH.
type Image struct {
	Layers       []Layer
	Cmd          []string
	Entrypoint   []string
	Env          []string
	Labels       map[string]string
	Created      time.Time
	OS           string
	Architecture string
}

// LayerBlob describes one layer written to a layout.
type LayerBlob struct {
	MediaType   string        `json:"media_type"`
	Digest      digest.Digest `json:"digest"`  // of the blob as stored (compressed)
	Size        int64         `json:"size"`    // of the blob
	DiffID      digest.Digest `json:"diff_id"` // of the uncompressed tar
	DiffSize    int64         `json:"diff_size"`
	Compression string        `json:"compression"`
}

// Written describes one image written to a layout.
type Written struct {
	Tag      string        `json:"tag"`
	Manifest digest.Digest `json:"manifest"`
	Config   digest.Digest `json:"config"` // its hex is the image ID in containers-storage
	Layers   []LayerBlob   `json:"layers"`
}

// WriteLayout writes img into the OCI image layout at dir (created if
// missing) and points tag at it in index.json, replacing an earlier image of
// the same tag. Blobs already present are kept, so several tags can share a
// layout and its blobs.
func WriteLayout(dir, tag string, img Image) (Written, error) {
	blobs, err := initLayout(dir)
	if err != nil {
		return Written{Tag: tag}, err
	}
	w, manDesc, err := writeImage(blobs, img)
	w.Tag = tag
	if err != nil {
		return w, err
	}
	manDesc.Annotations = map[string]string{v1.AnnotationRefName: tag}
	return w, addToIndex(dir, tag, manDesc)
}

// WriteMultiPlatform writes one image per platform and an image index naming them, and points tag
// at the index, as a registry serves a multi-architecture image. It returns each image's Written
// (in the order given) and the index digest.
func WriteMultiPlatform(dir, tag string, imgs []Image) ([]Written, digest.Digest, error) {
	blobs, err := initLayout(dir)
	if err != nil {
		return nil, "", err
	}
	idx := v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageIndex}
	var all []Written
	for _, img := range imgs {
		w, desc, err := writeImage(blobs, img)
		if err != nil {
			return nil, "", err
		}
		w.Tag = tag
		desc.Platform = &v1.Platform{OS: orDefault(img.OS, "linux"), Architecture: orDefault(img.Architecture, runtime.GOARCH)}
		idx.Manifests = append(idx.Manifests, desc)
		all = append(all, w)
	}
	idxDesc, err := writeBlob(blobs, mustJSON(idx))
	if err != nil {
		return nil, "", err
	}
	idxDesc.MediaType = v1.MediaTypeImageIndex
	idxDesc.Annotations = map[string]string{v1.AnnotationRefName: tag}
	return all, idxDesc.Digest, addToIndex(dir, tag, idxDesc)
}

// initLayout makes dir an OCI layout and returns its blob directory.
func initLayout(dir string) (string, error) {
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return "", err
	}
	return blobs, writeFileAtomic(filepath.Join(dir, v1.ImageLayoutFile),
		mustJSON(v1.ImageLayout{Version: v1.ImageLayoutVersion}))
}

// writeImage writes img's layers, config and manifest blobs and returns the manifest's descriptor.
func writeImage(blobs string, img Image) (Written, v1.Descriptor, error) {
	var w Written
	created := img.Created
	if created.IsZero() {
		created = Epoch
	}
	cfg := v1.Image{
		Created: &created,
		Platform: v1.Platform{
			OS:           orDefault(img.OS, "linux"),
			Architecture: orDefault(img.Architecture, runtime.GOARCH),
		},
		Config: v1.ImageConfig{
			Env:        img.Env,
			Entrypoint: img.Entrypoint,
			Cmd:        img.Cmd,
			Labels:     img.Labels,
		},
		RootFS: v1.RootFS{Type: "layers", DiffIDs: []digest.Digest{}},
	}
	if cfg.Config.Env == nil {
		cfg.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}

	man := v1.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageManifest,
		Layers:    []v1.Descriptor{},
	}
	for i, l := range img.Layers {
		lb, err := writeLayerBlob(blobs, l)
		if err != nil {
			return w, v1.Descriptor{}, fmt.Errorf("layer %d: %w", i, err)
		}
		w.Layers = append(w.Layers, lb)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, lb.DiffID)
		cfg.History = append(cfg.History, v1.History{Created: &created, CreatedBy: l.CreatedBy})
		man.Layers = append(man.Layers, v1.Descriptor{MediaType: lb.MediaType, Digest: lb.Digest, Size: lb.Size})
	}

	cfgBytes := mustJSON(cfg)
	cfgDesc, err := writeBlob(blobs, cfgBytes)
	if err != nil {
		return w, v1.Descriptor{}, err
	}
	w.Config = cfgDesc.Digest
	man.Config = v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: cfgDesc.Digest, Size: cfgDesc.Size}

	manDesc, err := writeBlob(blobs, mustJSON(man))
	if err != nil {
		return w, v1.Descriptor{}, err
	}
	w.Manifest = manDesc.Digest
	manDesc.MediaType = v1.MediaTypeImageManifest
	return w, manDesc, nil
}

// addToIndex points tag at desc in dir/index.json, keeping other tags.
func addToIndex(dir, tag string, desc v1.Descriptor) error {
	path := filepath.Join(dir, v1.ImageIndexFile)
	idx := v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageIndex}
	switch b, err := os.ReadFile(path); {
	case err == nil:
		if err := json.Unmarshal(b, &idx); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	kept := []v1.Descriptor{}
	for _, d := range idx.Manifests {
		if d.Annotations[v1.AnnotationRefName] != tag {
			kept = append(kept, d)
		}
	}
	idx.Manifests = append(kept, desc)
	return writeFileAtomic(path, mustJSON(idx))
}

// writeLayerBlob streams the layer's tar through the compressor into a temp
// file in blobs, hashing the tar (diff ID) and the blob (digest) on the way,
// then renames the file to its digest.
func writeLayerBlob(blobs string, l Layer) (LayerBlob, error) {
	lb := LayerBlob{MediaType: l.Compression.MediaType(), Compression: l.Compression.String()}
	tmp, err := os.CreateTemp(blobs, ".layer-*")
	if err != nil {
		return lb, err
	}
	blobHash := sha256.New()
	blobCount := &countWriter{w: io.MultiWriter(tmp, blobHash)}
	lb.DiffID, lb.DiffSize, err = compressLayer(blobCount, l)
	if err == nil {
		err = tmp.Chmod(0o644) // CreateTemp makes 0600
	}
	lb.Digest = digestOf(blobHash)
	lb.Size = blobCount.n
	return lb, finishTemp(tmp, filepath.Join(blobs, lb.Digest.Encoded()), err)
}

// compressLayer writes the layer's tar (and its trailer) through its compressor to w, and returns
// the tar's digest (the diff ID) and size.
func compressLayer(w io.Writer, l Layer) (digest.Digest, int64, error) {
	var comp io.WriteCloser
	switch l.Compression {
	case Uncompressed:
		comp = nopCloser{w}
	case Gzip:
		// Default level, no name, zero mtime in the header: reproducible.
		comp = gzip.NewWriter(w)
	case Zstd:
		// One goroutine so the frame layout never depends on scheduling.
		var err error
		comp, err = zstd.NewWriter(w, zstd.WithEncoderConcurrency(1))
		if err != nil {
			return "", 0, err
		}
	default:
		return "", 0, fmt.Errorf("unknown compression %v", l.Compression)
	}
	diffHash := sha256.New()
	diffCount := &countWriter{w: io.MultiWriter(comp, diffHash)}
	write := func() error { return WriteTar(diffCount, l.Entries) }
	if l.Raw != nil {
		write = func() error { _, err := diffCount.Write(l.Raw); return err }
	}
	if err := write(); err != nil {
		return "", 0, err
	}
	if _, err := diffCount.Write(l.Trailer); err != nil {
		return "", 0, err
	}
	if err := comp.Close(); err != nil {
		return "", 0, err
	}
	return digestOf(diffHash), diffCount.n, nil
}

func writeBlob(blobs string, b []byte) (v1.Descriptor, error) {
	d := digest.FromBytes(b)
	return v1.Descriptor{Digest: d, Size: int64(len(b))}, writeFileAtomic(filepath.Join(blobs, d.Encoded()), b)
}

func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(b)
	if err == nil {
		// CreateTemp makes 0600 files; layouts are read by other users' skopeo.
		err = tmp.Chmod(0o644)
	}
	return finishTemp(tmp, path, err)
}

// finishTemp closes tmp and, if writing it went well (werr is nil), renames it to path. Otherwise,
// or if closing or renaming fails, it removes tmp and returns the first error.
func finishTemp(tmp *os.File, path string, werr error) error {
	err := cmp.Or(werr, tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name()) // the error above is the one to report
	}
	return err
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func digestOf(h hash.Hash) digest.Digest {
	return digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h.Sum(nil)))
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
