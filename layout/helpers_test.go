package layout

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cargohold/cargohold/internal/testimage"
	digest "github.com/opencontainers/go-digest"
	"github.com/vbatts/tar-split/tar/asm"
	tsstorage "github.com/vbatts/tar-split/tar/storage"
	"go.podman.io/storage/pkg/archive"
	"go.podman.io/storage/pkg/reexec"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	// The storage library's own layer writer (TestRecordsMatchStorageLibrary) re-executes the test
	// binary to unpack in a chroot.
	if reexec.Init() {
		return
	}
	// A restrictive umask proves that the store's modes do not depend on the caller's.
	unix.Umask(0o077)
	os.Exit(m.Run())
}

// testEntry is a dir (data == "" and dir) or a regular file of a hand-made layer.
type testEntry struct {
	name string
	dir  bool
	data string
	mode int64
}

// testLayer is a committed test layer and what it was made from.
type testLayer struct {
	meta LayerMeta
	tar  []byte
}

var testMtime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// makeTar writes entries as a tar owned by the current user (so that the same files can be made on
// disk without privileges).
func makeTar(entries []testEntry) ([]byte, error) {
	tarEntries := make([]testimage.Entry, len(entries))
	for i, e := range entries {
		te := testimage.File(e.name, e.mode, e.data)
		if e.dir {
			te = testimage.Dir(e.name, e.mode)
		}
		te = te.Owner(os.Getuid(), os.Getgid())
		te.Header.ModTime, te.Header.Format = testMtime, tar.FormatPAX
		tarEntries[i] = te
	}
	var buf bytes.Buffer
	err := testimage.WriteTar(&buf, tarEntries)
	return buf.Bytes(), err
}

// stageTar does what the unpacker will do for a tar of plain dirs and files: the tar goes through
// tar-split's packer into l.TarSplit(), and the same files (mode, mtime) are made in l.DiffDir().
func stageTar(t *testing.T, s *Store, entries []testEntry) (*StagedLayer, []byte) {
	t.Helper()
	return stageTarOn(t, s, "", entries)
}

// stageTarOn stages entries as a layer on top of parent (in a vfs store, onto a copy of its tree).
func stageTarOn(t testing.TB, s *Store, parent string, entries []testEntry) (*StagedLayer, []byte) {
	t.Helper()
	l, data, err := stageTarErr(s, parent, entries)
	if err != nil {
		t.Fatal(err)
	}
	return l, data
}

func stageTarErr(s *Store, parent string, entries []testEntry) (*StagedLayer, []byte, error) {
	data, err := makeTar(entries)
	if err != nil {
		return nil, nil, err
	}
	l, err := s.StageLayer(parent)
	if err != nil {
		return nil, nil, err
	}
	rc, done, err := asm.NewInputTarStreamWithDone(bytes.NewReader(data), tsstorage.NewJSONPacker(l.TarSplit()), nil)
	if err != nil {
		return nil, nil, err
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return nil, nil, err
	}
	if err := <-done; err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		p := filepath.Join(l.DiffDir(), e.name)
		if e.dir {
			if err = os.Mkdir(p, 0o700); os.IsExist(err) { // vfs: copied from the parent
				err = nil
			}
		} else {
			err = os.WriteFile(p, []byte(e.data), 0o600)
		}
		if err == nil {
			err = os.Chmod(p, os.FileMode(e.mode))
		}
		if err != nil {
			return nil, nil, err
		}
	}
	for i := len(entries) - 1; i >= 0; i-- { // children first, so dir mtimes stay
		if err := os.Chtimes(filepath.Join(l.DiffDir(), entries[i].name), testMtime, testMtime); err != nil {
			return nil, nil, err
		}
	}
	return l, data, nil
}

// commitTestLayer stages and commits a layer on top of parent ("" for a base layer).
func commitTestLayer(t testing.TB, s *Store, parent string, entries []testEntry) testLayer {
	t.Helper()
	l, data := stageTarOn(t, s, parent, entries)
	meta := layerMetaFor(parent, data)
	if err := s.CommitLayer(l, meta); err != nil {
		t.Fatal(err)
	}
	return testLayer{meta: meta, tar: data}
}

// commitTestChain commits the test layers base, child and grandchild, each on the one before.
func commitTestChain(t *testing.T, s *Store) (base, child, grandchild testLayer) {
	t.Helper()
	base = commitTestLayer(t, s, "", baseEntries)
	child = commitTestLayer(t, s, base.meta.ID, childEntries)
	grandchild = commitTestLayer(t, s, child.meta.ID, grandchildEntries)
	return base, child, grandchild
}

// layerMetaFor describes a tar as if it had been pulled gzip-compressed.
func layerMetaFor(parent string, data []byte) LayerMeta {
	gz := gzipBytes(data)
	diffID := digest.Canonical.FromBytes(data)
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	return LayerMeta{
		ID:               ChainID(parent, diffID),
		Parent:           parent,
		CompressedDigest: digest.Canonical.FromBytes(gz),
		CompressedSize:   int64(len(gz)),
		DiffID:           diffID,
		DiffSize:         int64(len(data)),
		Compression:      archive.Gzip,
		UIDs:             []uint32{uid, uid},
		GIDs:             []uint32{gid},
	}
}

// gzipBytes compresses deterministically (no header timestamp), standing in for a registry blob.
func gzipBytes(data []byte) []byte {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(data); err != nil {
		panic(err) // a bytes.Buffer does not fail
	}
	if err := zw.Close(); err != nil {
		panic(err)
	}
	return gz.Bytes()
}

// testImageMeta builds a consistent OCI config and manifest for layers (base first) and returns what
// the builder would pass to PutImage.
func testImageMeta(t testing.TB, layers []testLayer, names []string, tag string) imageMeta {
	t.Helper()
	var diffIDs []digest.Digest
	var descs []map[string]any
	for _, l := range layers {
		diffIDs = append(diffIDs, l.meta.DiffID)
		descs = append(descs, map[string]any{
			"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
			"digest":    l.meta.CompressedDigest, "size": l.meta.CompressedSize,
		})
	}
	created := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	config, err := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux", "created": created,
		"config": map[string]any{"Cmd": []string{"/bin/sh"}, "Labels": map[string]string{"tag": tag}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	if err != nil {
		t.Fatal(err)
	}
	configDigest := digest.Canonical.FromBytes(config)
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{
			"mediaType": "application/vnd.oci.image.config.v1+json", "digest": configDigest, "size": len(config),
		},
		"layers": descs,
	})
	if err != nil {
		t.Fatal(err)
	}
	manifestDigest := digest.Canonical.FromBytes(manifest)
	return imageMeta{
		ID:       configDigest.Encoded(),
		Digest:   manifestDigest,
		TopLayer: layers[len(layers)-1].meta.ID,
		Names:    names,
		Created:  created,
		Metadata: fmt.Sprintf(`{"signatures-sizes":{%q:[]}}`, manifestDigest),
		BigData: []bigData{
			{Key: configDigest.String(), Data: config},
			{Key: "manifest-" + manifestDigest.String(), Data: manifest},
			{Key: "manifest", Data: manifest},
		},
	}
}

func openStore(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := OpenWithOptions(t.Context(), dir, Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	keepStore(s)
	t.Cleanup(func() { closeStore(t, s) })
	return s
}

// keepStore makes a store that s created stay when it is closed holding no image: tests build stores
// piece by piece over several opens (TestNewStoreWithoutImageIsRemoved tests the removal).
func keepStore(s *Store) { s.created = nil }

// closeStore closes a store the test opened; a lock it cannot release is a bug to report.
func closeStore(t testing.TB, s *Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Error(err)
	}
}

// putImage records img and waits until it is recorded (what PutImage does with an Image, for the
// imageMeta a test makes).
func (s *Store) putImage(img imageMeta) (changed bool, err error) {
	put, err := s.queueImage(img)()
	return put.Changed, err
}

// putImage records img in s; an error fails the test. It returns whether anything changed.
func putImage(t *testing.T, s *Store, img imageMeta) bool {
	t.Helper()
	changed, err := s.putImage(img)
	if err != nil {
		t.Fatal(err)
	}
	return changed
}

// readJSONFile decodes a store file into v.
func readJSONFile(t *testing.T, p string, v any) {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
}

func assertMode(t *testing.T, p string, want os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != want {
		t.Errorf("%s: mode %o, want %o", p, fi.Mode().Perm(), want)
	}
}

var (
	baseEntries = []testEntry{
		{name: "etc", dir: true, mode: 0o755},
		{name: "etc/hello", data: "hello from the base layer\n", mode: 0o644},
	}
	childEntries = []testEntry{
		{name: "etc", dir: true, mode: 0o755},
		{name: "etc/child", data: "child\n", mode: 0o600},
		{name: "opt", dir: true, mode: 0o750},
		{name: "opt/run.sh", data: "#!/bin/sh\necho hi\n", mode: 0o755},
	}
	grandchildEntries = []testEntry{
		{name: "srv", dir: true, mode: 0o755},
	}
)
