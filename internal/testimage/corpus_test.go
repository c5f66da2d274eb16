package testimage

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// readLayer writes l and reads it back with archive/tar, as every unpacker's reader does: the
// headers in order and each regular file's content, and what follows the end-of-archive blocks.
func readLayer(t *testing.T, l Layer) (hdrs []*tar.Header, bodies map[string][]byte, trailer []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteTar(&buf, l.Entries); err != nil {
		t.Fatal(err)
	}
	end := buf.Len()
	buf.Write(l.Trailer)
	tr := tar.NewReader(bytes.NewReader(buf.Bytes()))
	bodies = map[string][]byte{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("after %d entries: %v", len(hdrs), err)
		}
		hdrs = append(hdrs, h)
		if h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeGNUSparse {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatalf("%s: %v", h.Name, err)
			}
			bodies[h.Name] = b
		}
	}
	return hdrs, bodies, buf.Bytes()[end:]
}

func caseNamed(name string) CorpusCase {
	for _, cs := range CorpusCases() {
		if cs.Name == name {
			return cs
		}
	}
	panic("no corpus case " + name)
}

func header(hdrs []*tar.Header, name string) *tar.Header {
	for _, h := range hdrs {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// The crafted entries are what a reader sees: a V7 header, an old-GNU sparse file with its holes,
// a global header; the trailer follows the archive's end.
func TestCorpusFormatsReadBack(t *testing.T) {
	format := caseNamed("format")
	hdrs, bodies, _ := readLayer(t, caseLayers(format)[0])
	sparseHdrs, sparseBodies, _ := readLayer(t, caseLayers(caseNamed("gnu-sparse"))[0])

	if h := header(hdrs, "format/v7-dir/v7-file"); h == nil || h.Uname != "" || h.Typeflag != tar.TypeReg || h.Mode != 0o640 {
		t.Errorf("V7 file reads as %+v", h)
	}
	if h := header(hdrs, "format/v7-dir/"); h == nil || h.Typeflag != tar.TypeDir {
		t.Errorf("V7 directory reads as %+v", h)
	}
	if h := header(hdrs, "pax_global_header"); h == nil || h.Typeflag != tar.TypeXGlobalHeader || h.PAXRecords["comment"] == "" {
		t.Errorf("global header reads as %+v", h)
	}
	sparse := sparseBodies["gnu-sparse/file"]
	want := make([]byte, 3<<20)
	copy(want, "head")
	copy(want[1<<20:], strings.Repeat("m", 5000))
	if h := header(sparseHdrs, "gnu-sparse/file"); h == nil || h.Format != tar.FormatGNU || h.Size != 3<<20 || !bytes.Equal(sparse, want) {
		t.Errorf("GNU sparse file reads as %+v with %d bytes (want %d, data at 0 and 1 MiB)", h, len(sparse), len(want))
	}
	long := "format/pax-" + strings.Repeat("long-name-", 15)
	if h := header(hdrs, long); h == nil || string(bodies[long]) != "PAX long name\n" {
		t.Errorf("PAX long name reads as %+v", h)
	}
	if h := header(hdrs, "format/gnu-long-link"); h == nil || h.Format != tar.FormatGNU || len(h.Linkname) != 160 {
		t.Errorf("GNU long link name reads as %+v", h)
	}

	if _, _, trailer := readLayer(t, caseLayers(caseNamed("trailing-garbage"))[0]); !bytes.HasPrefix(trailer, []byte("garbage")) {
		t.Errorf("after the end-of-archive blocks: %q", trailer)
	}
}

// Every case's paths are under its top directory, each layer's first entry (after "./"), so a
// difference found in a tree names its case; the corpus image holds every case's layers.
func TestCorpusCasesKeepToTheirDirectory(t *testing.T) {
	img := Corpus([]byte("busybox"), Gzip)
	mergedLayers := 0
	for _, cs := range CorpusCases() {
		for i, l := range caseLayers(cs) {
			for j, e := range l.Entries {
				name := e.Header.Name
				switch {
				case name == "./" && j == 0, e.Header.Typeflag == tar.TypeXGlobalHeader:
				case name == cs.Name+"/" && (j == 0 || l.Entries[0].Header.Name == "./" && j == 1):
				case strings.HasPrefix(name, cs.Name+"/") && j > 0:
				default:
					t.Errorf("%s layer %d entry %d: %q", cs.Name, i, j, name)
				}
			}
		}
		if !cs.Alone && cs.Refused == "" {
			mergedLayers = max(mergedLayers, len(cs.Layers))
		}
	}
	// base + merged + empty layer + the duplicate layer twice
	if want := 1 + mergedLayers + 1 + 2; len(img.Layers) != want {
		t.Errorf("corpus has %d layers, want %d", len(img.Layers), want)
	}
	dir := t.TempDir()
	w, err := WriteLayout(dir, "1", img)
	if err != nil {
		t.Fatal(err)
	}
	n := len(w.Layers)
	if w.Layers[n-1].DiffID != w.Layers[n-2].DiffID || w.Layers[n-3].DiffSize != 1024 {
		t.Errorf("last layers %+v: want an empty layer, then the same layer twice", w.Layers[n-3:])
	}
}
