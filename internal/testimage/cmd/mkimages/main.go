// Command mkimages writes the e2e fixture images as OCI image layouts.
//
//	mkimages [-busybox /bin/busybox] [-only app:1,hello:1] OUTDIR
//
// Without -only it writes testimage.Fixtures; the differential corpus (testimage.CorpusFixtures:
// corpus:1, corpus-zstd:1, corpus-big:1) and the nightly series (testimage.NightlyFixtures:
// nightly:1 ... nightly:4) are written only when -only names them.
//
// For each fixture NAME:TAG it writes the layout OUTDIR/NAME (several tags of
// one name share a layout), ready for
//
//	skopeo copy --preserve-digests oci:OUTDIR/NAME:TAG docker://REGISTRY/cargotest/NAME:TAG
//
// and OUTDIR/fixtures.json, an array describing what was written (ref,
// layout, manifest and config digests, layers with digest/diff_id/media
// type, and the sha256 of selected files inside the image) so scripts can
// check results without knowing how the images are made. The output is
// reproducible: the same busybox gives the same digests on every run.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cargohold/cargohold/internal/testimage"
)

type record struct {
	Ref    string `json:"ref"`
	Name   string `json:"name"`
	Tag    string `json:"tag"`
	Layout string `json:"layout"` // absolute path of the layout directory
	testimage.Written
	Files map[string]string `json:"files,omitempty"`
	// Platforms of a multi-platform fixture, in index order; Written.Manifest is then the
	// index's digest and the rest of Written describes the first platform's image.
	Platforms []testimage.Written `json:"platforms,omitempty"`
}

func main() {
	busyboxPath := flag.String("busybox", "/bin/busybox", "static busybox binary for the base layer")
	only := flag.String("only", "", "comma-separated NAME:TAG list to write (default: all fixtures but the corpus)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [flags] OUTDIR\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *busyboxPath, *only); err != nil {
		fmt.Fprintln(os.Stderr, "mkimages:", err)
		os.Exit(1)
	}
}

func run(outdir, busyboxPath, only string) error {
	busybox, err := os.ReadFile(busyboxPath)
	if err != nil {
		return fmt.Errorf("reading busybox (install busybox-static, or pass -busybox): %w", err)
	}
	outdir, err = filepath.Abs(outdir)
	if err != nil {
		return err
	}

	fixtures := testimage.Fixtures(busybox)
	if only != "" {
		fixtures = append(fixtures, testimage.CorpusFixtures(busybox)...)
		fixtures = append(fixtures, testimage.NightlyFixtures(busybox, 4)...)
		want := map[string]bool{}
		for _, r := range strings.Split(only, ",") {
			want[strings.TrimSpace(r)] = true
		}
		var sel []testimage.Fixture
		for _, f := range fixtures {
			if want[f.Ref()] {
				sel = append(sel, f)
				delete(want, f.Ref())
			}
		}
		for r := range want {
			return fmt.Errorf("no fixture %q (have: %s)", r, refs(fixtures))
		}
		fixtures = sel
	}

	// Start each layout from scratch so index.json holds exactly this run's tags.
	for _, f := range fixtures {
		if err := os.RemoveAll(filepath.Join(outdir, f.Name)); err != nil {
			return err
		}
	}
	var out []record
	for _, f := range fixtures {
		dir := filepath.Join(outdir, f.Name)
		rec, err := write(dir, f)
		if err != nil {
			return fmt.Errorf("%s: %w", f.Ref(), err)
		}
		w := rec.Written
		out = append(out, rec)
		fmt.Printf("%-12s %s  config %s\n", f.Ref(), w.Manifest, w.Config)
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(outdir, "fixtures.json"), append(b, '\n'), 0o644)
}

func write(dir string, f testimage.Fixture) (record, error) {
	rec := record{Ref: f.Ref(), Name: f.Name, Tag: f.Tag, Layout: dir, Files: f.Files}
	if len(f.Platforms) == 0 {
		w, err := testimage.WriteLayout(dir, f.Tag, f.Image)
		rec.Written = w
		return rec, err
	}
	ws, index, err := testimage.WriteMultiPlatform(dir, f.Tag, f.Platforms)
	if err != nil {
		return rec, err
	}
	rec.Written, rec.Platforms = ws[0], ws
	rec.Manifest = index
	return rec, nil
}

func refs(fs []testimage.Fixture) string {
	var s []string
	for _, f := range fs {
		s = append(s, f.Ref())
	}
	return strings.Join(s, ", ")
}
