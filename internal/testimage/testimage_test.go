package testimage

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

var fakeBusybox = []byte("\x7fELF not really busybox")

func smallImage(c Compression) Image {
	return Image{
		Cmd: []string{"/bin/sh"},
		Layers: []Layer{
			BaseLayer(fakeBusybox, c),
			AppLayer2(c),
			{Compression: c, Entries: []Entry{
				Dir("data", 0o755),
				Whiteout("data/deleted.txt"),
				Opaque("data/opq"),
				SparseFile("data/sparse.img", 0o644, 1<<20, 4096, []byte("MID")),
			}},
		},
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func blobPath(dir string, d digest.Digest) string {
	return filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded())
}

// decompress opens a layer blob by sniffing its magic, as a registry client would.
func decompress(t *testing.T, path string) (io.Reader, Compression) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case bytes.HasPrefix(b, []byte{0x1f, 0x8b}):
		r, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		return r, Gzip
	case bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		r, err := zstd.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		return r, Zstd
	}
	return bytes.NewReader(b), Uncompressed
}

// TestLayoutIsConsistent checks every digest, size and media type of a written
// layout against the bytes on disk, for each compression.
func TestLayoutIsConsistent(t *testing.T) {
	for _, c := range []Compression{Uncompressed, Gzip, Zstd} {
		t.Run(c.String(), func(t *testing.T) {
			dir := t.TempDir()
			w, err := WriteLayout(dir, "1", smallImage(c))
			if err != nil {
				t.Fatal(err)
			}
			var layout v1.ImageLayout
			readJSON(t, filepath.Join(dir, "oci-layout"), &layout)
			if layout.Version != "1.0.0" {
				t.Errorf("oci-layout version %q", layout.Version)
			}
			var idx v1.Index
			readJSON(t, filepath.Join(dir, "index.json"), &idx)
			if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != w.Manifest ||
				idx.Manifests[0].Annotations[v1.AnnotationRefName] != "1" {
				t.Fatalf("index.json: %+v, want one manifest %s tagged 1", idx, w.Manifest)
			}
			var man v1.Manifest
			readJSON(t, blobPath(dir, w.Manifest), &man)
			var cfg v1.Image
			readJSON(t, blobPath(dir, man.Config.Digest), &cfg)
			if cfg.OS != "linux" || cfg.Architecture == "" || cfg.Created == nil || !cfg.Created.Equal(Epoch) {
				t.Errorf("config platform/created: %+v", cfg)
			}
			if len(man.Layers) != 3 || len(cfg.RootFS.DiffIDs) != 3 || len(cfg.History) != 3 {
				t.Fatalf("want 3 layers, diff IDs and history entries: %d %d %d",
					len(man.Layers), len(cfg.RootFS.DiffIDs), len(cfg.History))
			}
			for i, l := range man.Layers {
				path := blobPath(dir, l.Digest)
				blob, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if digest.FromBytes(blob) != l.Digest || int64(len(blob)) != l.Size {
					t.Errorf("layer %d: blob does not match its descriptor", i)
				}
				if l.MediaType != c.MediaType() {
					t.Errorf("layer %d: media type %s, want %s", i, l.MediaType, c.MediaType())
				}
				r, got := decompress(t, path)
				if got != c {
					t.Errorf("layer %d: blob is %v, want %v", i, got, c)
				}
				h := sha256.New()
				if _, err := io.Copy(h, r); err != nil {
					t.Fatal(err)
				}
				if d := digest.Digest("sha256:" + hex.EncodeToString(h.Sum(nil))); d != cfg.RootFS.DiffIDs[i] || d != w.Layers[i].DiffID {
					t.Errorf("layer %d: uncompressed digest %s, config says %s", i, d, cfg.RootFS.DiffIDs[i])
				}
			}
		})
	}
}

// TestReproducible: the same input gives the same digests, so fixtures can
// be rebuilt at any time and still match what a store already holds.
func TestReproducible(t *testing.T) {
	for _, c := range []Compression{Uncompressed, Gzip, Zstd} {
		a, err := WriteLayout(t.TempDir(), "x", smallImage(c))
		if err != nil {
			t.Fatal(err)
		}
		b, err := WriteLayout(t.TempDir(), "x", smallImage(c))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%v: two writes differ:\n%+v\n%+v", c, a, b)
		}
	}
}

// TestSharedBaseBlob: two images with the same base layer share one blob
// (other:1 and app:1 rely on this).
func TestSharedBaseBlob(t *testing.T) {
	dir := t.TempDir()
	a, err := WriteLayout(dir, "a", smallImage(Gzip))
	if err != nil {
		t.Fatal(err)
	}
	b, err := WriteLayout(dir, "b", Image{Layers: []Layer{BaseLayer(fakeBusybox, Gzip)}})
	if err != nil {
		t.Fatal(err)
	}
	if a.Layers[0] != b.Layers[0] {
		t.Errorf("base layers differ: %+v vs %+v", a.Layers[0], b.Layers[0])
	}
	var idx v1.Index
	readJSON(t, filepath.Join(dir, "index.json"), &idx)
	if len(idx.Manifests) != 2 {
		t.Errorf("index.json has %d manifests, want 2", len(idx.Manifests))
	}
	// Re-tagging replaces, never duplicates.
	if _, err := WriteLayout(dir, "a", Image{Layers: []Layer{BaseLayer(fakeBusybox, Gzip)}}); err != nil {
		t.Fatal(err)
	}
	readJSON(t, filepath.Join(dir, "index.json"), &idx)
	if len(idx.Manifests) != 2 {
		t.Errorf("after re-tagging, index.json has %d manifests, want 2", len(idx.Manifests))
	}
}

// TestEntries reads a written tar back and checks the headers tests rely on.
func TestEntries(t *testing.T) {
	var buf bytes.Buffer
	es := append(AppLayer2(Uncompressed).Entries, AppLayer3(Uncompressed).Entries[:6]...)
	es = append(es, SparseFile("data/s", 0o644, 10000, 5000, []byte("MIDDLE")))
	if err := WriteTar(&buf, es); err != nil {
		t.Fatal(err)
	}
	got := map[string]*tar.Header{}
	bodies := map[string][]byte{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = h
		bodies[h.Name], _ = io.ReadAll(tr)
		if !h.ModTime.Equal(Epoch) {
			t.Errorf("%s: mtime %v", h.Name, h.ModTime)
		}
	}
	check := func(name string, ok bool, what string) {
		t.Helper()
		if h := got[name]; h == nil {
			t.Errorf("%s: missing", name)
		} else if !ok {
			t.Errorf("%s: want %s, got %+v", name, what, *h)
		}
	}
	h := func(n string) *tar.Header {
		if got[n] == nil {
			return &tar.Header{}
		}
		return got[n]
	}
	check("usr/bin/suidtool", h("usr/bin/suidtool").Mode == 0o4755, "mode 04755")
	check("usr/bin/captool", h("usr/bin/captool").PAXRecords["SCHILY.xattr.security.capability"] == string(CapNetBindService), "capability xattr")
	check("home/user/owned.txt", h("home/user/owned.txt").Uid == 1000 && h("home/user/owned.txt").Gid == 1000 && h("home/user/owned.txt").Mode == 0o600, "1000:1000 0600")
	check("data/hard2", h("data/hard2").Typeflag == tar.TypeLink && h("data/hard2").Linkname == "data/hard1", "hardlink to data/hard1")
	check("data/fifo", h("data/fifo").Typeflag == tar.TypeFifo, "FIFO")
	check("data/link", h("data/link").Typeflag == tar.TypeSymlink && h("data/link").Linkname == "keep.txt", "symlink to keep.txt")
	check("data/.wh.deleted.txt", h("data/.wh.deleted.txt").Size == 0, "empty whiteout file")
	check("data/opq/.wh..wh..opq", h("data/opq/.wh..wh..opq").Size == 0, "empty opaque marker")
	check("data/opq/", h("data/opq/").Typeflag == tar.TypeDir, "directory")
	want := make([]byte, 10000)
	copy(want[5000:], "MIDDLE")
	check("data/s", bytes.Equal(bodies["data/s"], want), "zeros with MIDDLE at 5000")
}

func TestCapabilityBytesMatchSetcap(t *testing.T) {
	// 0x0100000200040000000000000000000000000000 is what
	// `setcap cap_net_bind_service+ep FILE; getfattr -e hex -n security.capability FILE` shows.
	if got := hex.EncodeToString(CapNetBindService); got != "0100000200040000000000000000000000000000" {
		t.Errorf("CapNetBindService = %s", got)
	}
}
