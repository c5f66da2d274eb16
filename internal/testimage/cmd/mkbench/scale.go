package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cargohold/cargohold/internal/testimage"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// scaleGroups is how many families the images of set "scale" come from: the images of one family
// share their three base layers, as the images built on one base image do.
const scaleGroups = 10

// scaleImages are n small images of five layers (scripts/bench-scale): three base layers shared by
// the images of their family, and two layers of their own (an app and its configuration).
func scaleImages(n int) []image {
	layer := func(dir string, files, size int, seed uint64, what string) testimage.Layer {
		return testimage.Layer{Compression: testimage.Gzip, CreatedBy: what, Entries: textEntries(dir, files, size, seed)}
	}
	var images []image
	for i := range n {
		g := uint64(i % scaleGroups)
		own := uint64(1000 + 2*i)
		images = append(images, image{fmt.Sprintf("scale-%04d", i), "1", testimage.Image{
			Layers: []testimage.Layer{
				layer(fmt.Sprintf("usr/lib/os%d/", g), 24, 4<<10, 100+g, "base"),
				layer(fmt.Sprintf("usr/lib/runtime%d/", g), 16, 8<<10, 200+g, "runtime"),
				layer(fmt.Sprintf("usr/lib/libs%d/", g), 8, 8<<10, 300+g, "libraries"),
				layer("srv/app/", 6, 2<<10, own, "app"),
				layer("etc/app/", 1, 512, own+1, "config"),
			},
			Cmd: []string{"/bin/sh"},
		}})
	}
	return images
}

// exportToRegistry puts the images written to OCI layouts straight into the filesystem storage of a
// docker-registry (distribution 2.8) rooted at root, as repositories prefix+name with their tag, as
// if they had been pushed: blobs are hard-linked (copied across filesystems) from the layouts. The
// registry must not run meanwhile. Pushing a thousand images through the registry's API would take
// longer than the benchmark itself.
func exportToRegistry(root, prefix string, records []record) error {
	v2 := filepath.Join(root, "docker", "registry", "v2")
	for _, r := range records {
		repo := filepath.Join(v2, "repositories", filepath.FromSlash(prefix+r.Name))
		var m v1.Manifest
		if err := testimage.ReadJSONFile(testimage.BlobPath(r.Layout, r.Manifest), &m); err != nil {
			return err
		}
		layers := []digest.Digest{m.Config.Digest}
		for _, l := range m.Layers {
			layers = append(layers, l.Digest)
		}
		for _, d := range append(layers, r.Manifest) {
			if err := putBlob(v2, testimage.BlobPath(r.Layout, d), d); err != nil {
				return fmt.Errorf("%s: %w", r.Ref, err)
			}
		}
		links := map[string]digest.Digest{
			filepath.Join("_manifests", "revisions", "sha256", r.Manifest.Encoded()):            r.Manifest,
			filepath.Join("_manifests", "tags", r.Tag, "current"):                               r.Manifest,
			filepath.Join("_manifests", "tags", r.Tag, "index", "sha256", r.Manifest.Encoded()): r.Manifest,
		}
		for _, d := range layers {
			links[filepath.Join("_layers", "sha256", d.Encoded())] = d
		}
		for dir, d := range links {
			if err := writeLink(filepath.Join(repo, dir), d); err != nil {
				return fmt.Errorf("%s: %w", r.Ref, err)
			}
		}
	}
	return nil
}

// putBlob stores the file src as blob d of the registry's v2 storage, unless it is there already.
func putBlob(v2, src string, d digest.Digest) error {
	dir := filepath.Join(v2, "blobs", "sha256", d.Encoded()[:2], d.Encoded())
	dst := filepath.Join(dir, "data")
	if _, err := os.Stat(dst); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}

// writeLink writes dir/link, the registry's pointer to a blob.
func writeLink(dir string, d digest.Digest) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "link"), []byte(d.String()), 0o644)
}
