package builder

import (
	"context"
	"fmt"
	"io"

	"github.com/cargohold/cargohold/builder/unpack"
	"github.com/cargohold/cargohold/internal/faultpoint"
	"github.com/cargohold/cargohold/layout"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/pkg/compression"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage/pkg/archive"
)

// layerJob is one layer of an image that the store does not have yet.
type layerJob struct {
	blob     types.BlobInfo // as the manifest describes it
	diffID   digest.Digest  // as the config describes it; "" for schema 1 until fetched
	id       string         // chain ID; "" for schema 1 until fetched
	parent   string         // parent's chain ID, "" for a base layer
	staged   *layout.StagedLayer
	meta     layout.LayerMeta
	fetched  int64 // compressed bytes read from the source
	retries  int   // Options.RetryTimes: for the request of the blob (a broken stream is resumed by containers/image)
	progress progress
	opaque   []string      // the layer's opaque dirs (unpack.Result.OpaqueDirs)
	unpacked unpack.Result // what unpack.Layer said (for unpack.LinkEqualFiles at commit)
	// Of the images of a run that need this layer, one fetches it (see layerFlights): lead is set
	// when this job does, wait when another image does and this job waits for it to commit.
	lead, wait *flight
}

// fetch streams one layer blob from the source through decompression into the unpacker, writing into a
// staging directory of the store. Both the blob digest and the diff ID are checked before it returns
// nil; the layer becomes visible only when the caller commits it.
func (j *layerJob) fetch(ctx context.Context, src types.ImageSource, store *layout.Store, uopts unpack.Options) (err error) {
	j.progress.send(LayerStarted, 0)
	defer func() {
		if err != nil {
			j.progress.send(LayerFailed, j.fetched)
		}
	}()
	if j.staged, err = store.StageLayer(j.parent); err != nil {
		return err
	}
	uopts.Apply = j.staged.AppliesChanges()
	uopts.Files = j.staged.Files()
	var blob io.ReadCloser
	err = retry(ctx, j.retries, "fetching layer "+j.blob.Digest.String(), func() (err error) {
		blob, _, err = src.GetBlob(ctx, j.blob, none.NoCache)
		return err
	})
	if err != nil {
		return fmt.Errorf("fetching layer %s: %w", j.blob.Digest, err)
	}
	defer func() { _ = blob.Close() }() // a read stream: nothing to report on close

	// Every compressed byte goes through the digester exactly once, whatever the decompressor buffers.
	verifier := j.blob.Digest.Verifier()
	counted := &countingReader{r: io.TeeReader(blob, verifier), progress: &j.progress}
	algo, decompress, peeked, err := compression.DetectCompressionFormat(counted)
	if err != nil {
		return fmt.Errorf("layer %s: detecting its compression: %w", j.blob.Digest, err)
	}
	tarStream := peeked
	if decompress != nil {
		d, err := decompressorFor(algo, decompress, j.blob.Size)(peeked)
		if err != nil {
			return fmt.Errorf("layer %s: opening %s stream: %w", j.blob.Digest, algo.Name(), err)
		}
		defer func() { _ = d.Close() }()
		tarStream = d
	}
	tarStream = faultpoint.Reader("layer-unpacking", tarStream) // crash tests: die mid-layer
	result, err := unpack.Layer(ctx, tarStream, j.staged.DiffDir(), j.staged.TarSplit(), uopts)
	if err != nil {
		return fmt.Errorf("layer %s: %w", j.blob.Digest, err)
	}
	faultpoint.Hit("layer-unpacked")
	// A decompressor may stop at the end of its data; the digest covers the whole blob.
	if _, err := io.Copy(io.Discard, counted); err != nil {
		return fmt.Errorf("layer %s: reading to its end: %w", j.blob.Digest, err)
	}
	j.fetched = counted.n
	if !verifier.Verified() {
		return fmt.Errorf("layer %s: the registry sent content with a different digest (corrupt blob or tampering); nothing was published", j.blob.Digest)
	}
	if j.blob.Size > 0 && counted.n != j.blob.Size {
		return fmt.Errorf("layer %s: the manifest says %d bytes, the registry sent %d", j.blob.Digest, j.blob.Size, counted.n)
	}
	if j.diffID == "" { // schema 1: no config lists the diff ID, so the content names the layer
		j.diffID, j.id = result.DiffID, layout.ChainID(j.parent, result.DiffID)
	} else if result.DiffID != j.diffID {
		return diffIDMismatch(j.blob.Digest, j.diffID, result)
	}
	j.meta = layout.LayerMeta{
		ID:               j.id,
		Parent:           j.parent,
		CompressedDigest: j.blob.Digest,
		CompressedSize:   counted.n,
		DiffID:           result.DiffID,
		DiffSize:         result.DiffSize,
		Compression:      storageCompression(algo, decompress != nil),
		UIDs:             result.UIDs,
		GIDs:             result.GIDs,
	}
	j.opaque = result.OpaqueDirs
	j.unpacked = result
	j.progress.send(LayerDone, counted.n)
	return nil
}

// shareByLinks finishes the hard links of the layer's files to equal files of the store, in a store
// that shares file data by hard links (unpack.LinkEqualFiles). Like hideLower, it runs at commit: the
// layers below must be final, for none of their files may end up sharing an inode with one of this
// layer's.
func (j *layerJob) shareByLinks() error {
	return unpack.LinkEqualFiles(j.staged.DiffDir(), &j.unpacked, j.staged.Files())
}

// tarBlock is the unit of a tar stream; a tar writer pads an archive with zero blocks after its
// end-of-archive marker up to a whole record, 20 blocks by default (GNU tar, bsdtar).
const (
	tarBlock        = 512
	tarRecordBlocks = 20
)

// diffIDMismatch is the error for a layer whose uncompressed content is not the one its config
// names. One cause is known and common enough to name: the zstd:chunked compressor of
// containers/storage before v1.52 (skopeo up to 1.13, Podman 4.x) dropped the zero padding after
// the tar's end-of-archive marker but kept the diff ID of the padded tar (containers/storage#1771).
// Podman 5.4 and later refuse such a layer too ("does not match config's DiffID"), and no store
// can hold it under its config's diff ID: the image must be pushed again from its original.
func diffIDMismatch(blob, want digest.Digest, got unpack.Result) error {
	if got.DiffSize%tarBlock == 0 {
		for n := 1; n <= tarRecordBlocks; n++ {
			if got.DiffIDWithZeros(n*tarBlock) == want {
				return fmt.Errorf("layer %s: uncompressed content has digest %s, but the image config lists diff_id %s, "+
					"the digest of this content followed by %d zero bytes: the tar padding after its end-of-archive marker was lost, "+
					"most likely by the zstd:chunked compressor of skopeo <= 1.13 or Podman 4.x (containers/storage#1771). "+
					"Podman 5.4 and later refuse this layer too. Push the image again from its original (not from this copy) "+
					"with a current skopeo or Podman, then publish it", blob, got.DiffID, want, n*tarBlock)
			}
		}
	}
	return fmt.Errorf("layer %s: uncompressed content has digest %s, but the image config lists diff_id %s", blob, got.DiffID, want)
}

// hideLower writes the whiteouts that make the layer's opaque dirs opaque for rootless readers too
// (unpack.HideLower). It runs when the layer is committed, not when it is unpacked: the layers of
// an image are unpacked concurrently, and only at commit are all layers below it final.
func (j *layerJob) hideLower() error {
	if len(j.opaque) == 0 {
		return nil
	}
	lowers, err := j.staged.LowerDiffDirs()
	if err != nil {
		return err
	}
	return unpack.HideLower(j.staged.DiffDir(), j.opaque, lowers)
}

// decompressorFor picks the decompressor of a detected algorithm for a blob of size bytes (<= 0:
// unknown): containers/image's (klauspost's pgzip for gzip), except for zstd and small gzip blobs.
//
// pgzip decodes ahead in 16 blocks of 1 MiB, allocated and cleared for every stream: for the small
// layers of most images that costs more than decoding them, and a run publishing many images at
// once would hold that much per layer in flight. A blob smaller than that decodes in the reading
// goroutine (klauspost's gzip), with a buffer of its own size.
//
// zstd's default decoder decodes ahead on up to four goroutines per stream, each with buffers of
// the stream's window (8 MiB as klauspost and Podman write zstd), so memory would grow with --jobs
// times the host's CPUs; decoding in the reading goroutine keeps one window per layer, and the
// layers fetched at once keep the CPUs busy anyway.
func decompressorFor(algo compression.Algorithm, d compression.DecompressorFunc, size int64) compression.DecompressorFunc {
	switch {
	case algo.BaseVariantName() == compression.Zstd.Name():
		return func(r io.Reader) (io.ReadCloser, error) {
			z, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
			if err != nil {
				return nil, err
			}
			return z.IOReadCloser(), nil
		}
	case algo.BaseVariantName() == compression.Gzip.Name() && size > 0 && size < smallGzipBlob:
		return func(r io.Reader) (io.ReadCloser, error) { return gzip.NewReader(r) }
	}
	return d
}

// smallGzipBlob is the size below which a gzip blob is decoded without pgzip's read-ahead (16 MiB).
const smallGzipBlob = 16 << 20

// storageCompression maps a detected algorithm to the value containers/storage records in layers.json.
func storageCompression(algo compression.Algorithm, compressed bool) archive.Compression {
	if !compressed {
		return archive.Uncompressed
	}
	switch algo.BaseVariantName() {
	case compression.Gzip.Name():
		return archive.Gzip
	case compression.Zstd.Name():
		return archive.Zstd
	case compression.Bzip2.Name():
		return archive.Bzip2
	case compression.Xz.Name():
		return archive.Xz
	}
	return archive.Uncompressed
}

type countingReader struct {
	r        io.Reader
	n        int64
	progress *progress
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.progress.read(c.n)
	return n, err
}
