// Command mkbench writes the images of scripts/bench and scripts/e2e-resync as OCI image layouts.
//
//	mkbench [-size full|quick] [-compression gzip|zstd] [-set bench,resync,scale,five] [-n N] [-registry-dir DIR -registry-prefix P]
//	        [-base-list FILE] [-runtime-list FILE] OUTDIR
//
// Set "bench" (needs -base-list and -runtime-list):
//
//	bench-app:1   base + runtime + data: a Debian-like base, a language runtime, and a data layer of
//	              1 GiB (-size quick: 128 MiB) holding a zero-filled disk image, a random file from a
//	              fixed seed (64 MiB; quick: 16 MiB) and compressible text files
//	bench-tool:1  base + runtime + a small layer of its own: the "second image" sharing layers
//
// The base and runtime layers are made of this machine's installed files, named one per line in the
// list files (scripts/bench lists the files of Debian's required packages and their dependencies, and
// of python3.11). Set "resync" is 20 small images resync-00:1 … resync-19:1 sharing a base layer.
// Set "scale" is -n small images scale-0000:1 … of five layers, the first three shared by the
// images of one of ten families (scripts/bench-scale). With -registry-dir, the images are also put
// straight into that docker-registry storage root as repositories -registry-prefix+name.
// Set "five" (needs the lists too) is bench-five:1, an image built the way a Dockerfile of five steps
// builds one: the base, the runtime, a configuration layer, a clean-up layer that empties
// /usr/share/doc and /usr/share/man (opaque directories) and deletes a file, and an application
// layer; scripts/e2e-cvmfs-real measures what its overlay and vfs stores cost in CVMFS.
//
// Everything is reproducible: fixed mtimes, sorted entries, seeded data, testimage's deterministic
// gzip. The same machine (same installed packages) gives the same digests on every run.
// OUTDIR/fixtures.json describes what was written in the format of mkimages (ref, layout, manifest,
// config, layers), so scripts/lib.sh's push_fixture pushes these images too.
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/cargohold/cargohold/internal/testimage"
)

// sizes of the data layer.
type sizes struct {
	zero, random int64 // the zero-filled disk image, the random file
	textFiles    int   // files of textFileSize bytes of generated text
}

const textFileSize = 64 << 10

var sizesByName = map[string]sizes{
	// 832 MiB + 64 MiB + 128 MiB = 1 GiB
	"full": {zero: 832 << 20, random: 64 << 20, textFiles: 2048},
	// 96 MiB + 16 MiB + 16 MiB = 128 MiB
	"quick": {zero: 96 << 20, random: 16 << 20, textFiles: 256},
}

// record is one line of fixtures.json, as mkimages writes it.
type record struct {
	Ref    string `json:"ref"`
	Name   string `json:"name"`
	Tag    string `json:"tag"`
	Layout string `json:"layout"`
	testimage.Written
}

func main() {
	size := flag.String("size", "full", "data layer size: full (1 GiB) or quick (128 MiB)")
	compression := flag.String("compression", "gzip", "layer compression of set bench: gzip or zstd")
	sets := flag.String("set", "bench,resync", "comma-separated image sets to write: bench, resync, scale, five")
	scaleN := flag.Int("n", 1000, "images of set scale")
	registryDir := flag.String("registry-dir", "", "also put the images into this docker-registry filesystem storage `DIR` (the registry stopped)")
	registryPrefix := flag.String("registry-prefix", "bench/", "repository `PREFIX` of the images put into -registry-dir")
	baseList := flag.String("base-list", "", "`FILE` naming the base layer's files, one absolute path a line")
	runtimeList := flag.String("runtime-list", "", "`FILE` naming the runtime layer's files")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [flags] OUTDIR\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	comp, ok := compressions[*compression]
	if !ok {
		fmt.Fprintf(os.Stderr, "mkbench: -compression %q: want gzip or zstd\n", *compression)
		os.Exit(2)
	}
	out, err := run(flag.Arg(0), *size, comp, *sets, *scaleN, *baseList, *runtimeList)
	if err == nil && *registryDir != "" {
		err = exportToRegistry(*registryDir, *registryPrefix, out)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkbench:", err)
		os.Exit(1)
	}
}

type image struct {
	name, tag string
	img       testimage.Image
}

var compressions = map[string]testimage.Compression{"gzip": testimage.Gzip, "zstd": testimage.Zstd}

func run(outdir, size string, comp testimage.Compression, sets string, scaleN int, baseList, runtimeList string) ([]record, error) {
	sz, ok := sizesByName[size]
	if !ok {
		return nil, fmt.Errorf("-size %q: want full or quick", size)
	}
	outdir, err := filepath.Abs(outdir)
	if err != nil {
		return nil, err
	}
	var images []image
	for _, set := range strings.Split(sets, ",") {
		switch set {
		case "bench":
			if baseList == "" || runtimeList == "" {
				return nil, fmt.Errorf("set bench needs -base-list and -runtime-list")
			}
			imgs, err := benchImages(sz, comp, baseList, runtimeList)
			if err != nil {
				return nil, err
			}
			images = append(images, imgs...)
		case "resync":
			images = append(images, resyncImages(20)...)
		case "scale":
			images = append(images, scaleImages(scaleN)...)
		case "five":
			img, err := fiveLayerImage(comp, baseList, runtimeList)
			if err != nil {
				return nil, err
			}
			images = append(images, img)
		default:
			return nil, fmt.Errorf("-set: unknown set %q (want bench, resync, scale, five)", set)
		}
	}

	var out []record
	for _, im := range images {
		dir := filepath.Join(outdir, im.name)
		// Start from scratch so index.json holds exactly this run's tag.
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
		w, err := testimage.WriteLayout(dir, im.tag, im.img)
		if err != nil {
			return nil, fmt.Errorf("%s:%s: %w", im.name, im.tag, err)
		}
		ref := im.name + ":" + im.tag
		out = append(out, record{Ref: ref, Name: im.name, Tag: im.tag, Layout: dir, Written: w})
		fmt.Printf("%-14s %s  config %s\n", ref, w.Manifest, w.Config)
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, err
	}
	return out, os.WriteFile(filepath.Join(outdir, "fixtures.json"), append(b, '\n'), 0o644)
}

func benchImages(sz sizes, comp testimage.Compression, baseList, runtimeList string) ([]image, error) {
	base, err := hostLayer(baseList, comp, "Debian-like base: required packages and their dependencies")
	if err != nil {
		return nil, fmt.Errorf("base layer: %w", err)
	}
	runtime, err := hostLayer(runtimeList, comp, "language runtime")
	if err != nil {
		return nil, fmt.Errorf("runtime layer: %w", err)
	}
	data := testimage.Layer{Compression: comp, CreatedBy: "data: disk image, random file, text", Entries: dataEntries(sz)}
	tool := testimage.Layer{Compression: comp, CreatedBy: "tool", Entries: textEntries("opt/tool/", 200, 16<<10, 99)}
	cmd := []string{"/bin/sh", "-c", "ls /opt"}
	return []image{
		{"bench-app", "1", testimage.Image{Layers: []testimage.Layer{base, runtime, data}, Cmd: cmd}},
		{"bench-tool", "1", testimage.Image{Layers: []testimage.Layer{base, runtime, tool}, Cmd: cmd}},
	}, nil
}

// fiveLayerImage is set "five"'s image (see the package comment).
func fiveLayerImage(comp testimage.Compression, baseList, runtimeList string) (image, error) {
	if baseList == "" || runtimeList == "" {
		return image{}, fmt.Errorf("set five needs -base-list and -runtime-list")
	}
	base, err := hostLayer(baseList, comp, "Debian-like base: required packages and their dependencies")
	if err != nil {
		return image{}, fmt.Errorf("base layer: %w", err)
	}
	runtime, err := hostLayer(runtimeList, comp, "language runtime")
	if err != nil {
		return image{}, fmt.Errorf("runtime layer: %w", err)
	}
	config := testimage.Layer{Compression: comp, CreatedBy: "configuration", Entries: append([]testimage.Entry{
		testimage.Dir("etc/", 0o755),
		testimage.File("etc/motd", 0o644, "configured by the third layer\n"),
	}, textEntries("etc/app/", 20, 2<<10, 5)...)}
	cleanup := testimage.Layer{Compression: comp, CreatedBy: "clean-up: rm -rf /usr/share/doc/* /usr/share/man/* /etc/motd", Entries: []testimage.Entry{
		testimage.Dir("etc/", 0o755), testimage.Whiteout("etc/motd"),
		testimage.Dir("usr/", 0o755), testimage.Dir("usr/share/", 0o755),
		testimage.Dir("usr/share/doc/", 0o755), testimage.Opaque("usr/share/doc"),
		testimage.Dir("usr/share/man/", 0o755), testimage.Opaque("usr/share/man"),
	}}
	app := testimage.Layer{Compression: comp, CreatedBy: "application", Entries: textEntries("opt/app/", 200, 16<<10, 99)}
	return image{"bench-five", "1", testimage.Image{Layers: []testimage.Layer{base, runtime, config, cleanup, app},
		Cmd: []string{"/bin/sh", "-c", "ls /opt/app"}}}, nil
}

// dataEntries is the big layer: a preallocated disk image (all zeros, which a store should keep as a
// hole), incompressible data and compressible text.
func dataEntries(sz sizes) []testimage.Entry {
	entries := []testimage.Entry{
		testimage.Dir("opt/", 0o755),
		testimage.Dir("opt/data/", 0o755),
		testimage.SparseFile("opt/data/disk.img", 0o644, sz.zero, 0, nil),
		{
			Header: tar.Header{Typeflag: tar.TypeReg, Name: "opt/data/random.bin", Mode: 0o644, Size: sz.random},
			Body: func() io.Reader {
				return io.LimitReader(rand.NewChaCha8([32]byte{'c', 'a', 'r', 'g', 'o'}), sz.random)
			},
		},
	}
	return append(entries, textEntries("opt/data/text/", sz.textFiles, textFileSize, 1)...)
}

// textEntries are n files of size bytes of generated, compressible text in dir, each generated
// when the layer is written.
func textEntries(dir string, n, size int, seed uint64) []testimage.Entry {
	entries := []testimage.Entry{testimage.Dir(dir, 0o755)}
	for i := range n {
		entries = append(entries, testimage.Entry{
			Header: tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("%s%05d.txt", dir, i), Mode: 0o644, Size: int64(size)},
			Body:   func() io.Reader { return bytes.NewReader(text(size, seed, uint64(i))) },
		})
	}
	return entries
}

var words = strings.Fields(`the a of to and in is it that for on with as was at by be this from or
	image layer store podman registry container digest manifest config cluster node storage overlay
	build publish fetch unpack verify compress archive file directory link whiteout metadata read only`)

// text is size bytes of lines of words, a function of seed and i only.
func text(size int, seed, i uint64) []byte {
	r := rand.New(rand.NewPCG(seed, i))
	b := make([]byte, 0, size+16)
	line := 0
	for len(b) < size {
		w := words[r.IntN(len(words))]
		if line+len(w) > 72 {
			b = append(b, '\n')
			line = 0
		} else if line > 0 {
			b = append(b, ' ')
			line++
		}
		b = append(b, w...)
		line += len(w)
	}
	return b[:size]
}

// hostLayer is a layer of this machine's files: every path in listFile (directories, regular files,
// symlinks; other kinds skipped) with its parents, owner and mode, in a reproducible order and with a
// fixed mtime. Hardlinked files become separate files.
func hostLayer(listFile string, comp testimage.Compression, createdBy string) (testimage.Layer, error) {
	f, err := os.Open(listFile)
	if err != nil {
		return testimage.Layer{}, err
	}
	defer func() { _ = f.Close() }() // read only: closing cannot lose anything
	paths := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := path.Clean(strings.TrimSpace(sc.Text()))
		if !path.IsAbs(p) || p == "/" {
			continue
		}
		// dpkg names files by the paths packages ship, e.g. /bin/bash, where /bin is a symlink
		// to usr/bin on merged-/usr systems: an image holds usr/bin/bash (and the symlink bin),
		// and Podman refuses entries below a symlink.
		dir, err := filepath.EvalSymlinks(path.Dir(p))
		if err != nil {
			continue // listed by dpkg but removed since
		}
		p = path.Join(dir, path.Base(p))
		// The parents too: a layer lists every directory it creates.
		for q := p; q != "/" && !paths[q]; q = path.Dir(q) {
			paths[q] = true
		}
	}
	if err := sc.Err(); err != nil {
		return testimage.Layer{}, err
	}
	if len(paths) == 0 {
		return testimage.Layer{}, fmt.Errorf("%s names no files", listFile)
	}
	sorted := make([]string, 0, len(paths))
	for p := range paths {
		sorted = append(sorted, p)
	}
	// Parents before children: compare with '/' as the smallest byte.
	slices.SortFunc(sorted, func(a, b string) int {
		return strings.Compare(strings.ReplaceAll(a, "/", "\x00"), strings.ReplaceAll(b, "/", "\x00"))
	})

	layer := testimage.Layer{Compression: comp, CreatedBy: createdBy}
	for _, p := range sorted {
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			if os.IsNotExist(err) {
				continue // listed by dpkg but removed since (e.g. docs on a slim host)
			}
			return layer, &os.PathError{Op: "lstat", Path: p, Err: err}
		}
		name := strings.TrimPrefix(p, "/")
		mode := int64(st.Mode & 0o7777)
		var e testimage.Entry
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFDIR:
			e = testimage.Dir(name, mode)
		case syscall.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return layer, err
			}
			e = testimage.Symlink(name, target)
		case syscall.S_IFREG:
			e = testimage.Entry{
				Header: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: st.Size},
				Body:   func() io.Reader { return &fileReader{path: p} },
			}
		default:
			continue
		}
		layer.Entries = append(layer.Entries, e.Owner(int(st.Uid), int(st.Gid)))
	}
	return layer, nil
}

// fileReader opens its file on the first Read and closes it at the end, so that a layer of
// thousands of files never holds more than one open.
type fileReader struct {
	path string
	f    *os.File
	done bool
}

func (r *fileReader) Read(p []byte) (int, error) {
	if r.done {
		return 0, io.EOF
	}
	if r.f == nil {
		f, err := os.Open(r.path)
		if err != nil {
			r.done = true
			return 0, err
		}
		r.f = f
	}
	n, err := r.f.Read(p)
	if err != nil {
		_ = r.f.Close() // read only, and the read's error (or EOF) is the one to return
		r.done = true
	}
	return n, err
}

// resyncImages are n small images sharing a base layer, for the no-op resync check.
func resyncImages(n int) []image {
	base := testimage.Layer{Compression: testimage.Gzip, CreatedBy: "resync base", Entries: []testimage.Entry{
		testimage.Dir("etc/", 0o755),
		testimage.File("etc/os-release", 0o644, "NAME=resync\n"),
		testimage.Dir("usr/", 0o755),
		testimage.Dir("usr/share/", 0o755),
	}}
	base.Entries = append(base.Entries, textEntries("usr/share/doc/", 16, 4<<10, 7)...)
	var images []image
	for i := range n {
		own := testimage.Layer{Compression: testimage.Gzip, CreatedBy: "resync image", Entries: []testimage.Entry{
			testimage.Dir("srv/", 0o755),
			testimage.File("srv/id", 0o644, fmt.Sprintf("resync image %02d\n", i)),
		}}
		images = append(images, image{fmt.Sprintf("resync-%02d", i), "1", testimage.Image{
			Layers: []testimage.Layer{base, own},
			Cmd:    []string{"/bin/sh"},
		}})
	}
	return images
}
