package builder

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cargohold/cargohold/internal/testenv"
	"github.com/cargohold/cargohold/internal/testimage"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// A zstd:chunked layer pushed by skopeo <= 1.13 or Podman 4.x lacks the zero padding after its tar's
// end-of-archive marker while the config keeps the diff ID of the padded tar
// (containers/storage#1771). It is refused, as Podman 5.4+ refuses it, and the message says why,
// that current Podman refuses it too, and what to do; another mismatch makes no such claim.
func TestLayerThatLostItsTarPaddingIsRefusedWithItsCause(t *testing.T) {
	testenv.RequireRoot(t)
	store, _ := openStore(t)
	p := &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t)}}
	dir := filepath.Join(t.TempDir(), "chunked")
	w, err := testimage.WriteLayout(dir, "1", onBase(testimage.Zstd,
		testimage.Dir("etc", 0o755), testimage.File("etc/motd", 0o644, "pushed as zstd:chunked\n")))
	if err != nil {
		t.Fatal(err)
	}
	// The blob as the old compressor wrote it: the tar up to its end-of-archive marker. The
	// original it was made from went on with zeros to a whole 10240-byte record.
	stream := zstdContent(t, testimage.BlobPath(dir, w.Layers[1].Digest))
	missing := 10240 - len(stream)%10240
	if missing == 10240 {
		t.Fatal("the crafted tar ends on a record: change its content")
	}
	padded := digest.FromBytes(append(stream, make([]byte, missing)...))
	setDiffID := func(d digest.Digest) {
		t.Helper()
		if _, _, err := testimage.EditImage(dir, "1", func(_ *v1.Manifest, c *v1.Image) { c.RootFS.DiffIDs[1] = d }); err != nil {
			t.Fatal(err)
		}
	}
	ref := "oci:" + dir + ":1"

	setDiffID(padded)
	res := publish(t, p, ref, "localhost/test/chunked:1")
	if res.Err == nil {
		t.Fatal("the layer was published under a diff ID its content does not have")
	}
	msg := res.Err.Error()
	for _, want := range []string{ref, "layer " + w.Layers[1].Digest.String(), "diff_id " + padded.String(),
		"followed by " + strconv.Itoa(missing) + " zero bytes", "zstd:chunked compressor of skopeo <= 1.13 or Podman 4.x",
		"containers/storage#1771", "Podman 5.4 and later refuse this layer too", "Push the image again from its original"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error does not say %q:\n%s", want, msg)
		}
	}
	if len(store.Images()) != 0 {
		t.Errorf("the store holds %d images after the refusal", len(store.Images()))
	}

	other := digest.FromString("another layer")
	setDiffID(other)
	res = publish(t, p, ref, "localhost/test/chunked:1")
	if res.Err == nil || !strings.Contains(res.Err.Error(), "diff_id "+other.String()) || strings.Contains(res.Err.Error(), "zstd:chunked") {
		t.Errorf("another mismatch: %v", res.Err)
	}
}

func zstdContent(t *testing.T, path string) []byte {
	t.Helper()
	blob, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := zstd.NewReader(bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
