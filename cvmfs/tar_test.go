package cvmfs

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cargohold/cargohold/internal/testenv"
	"golang.org/x/sys/unix"
)

func TestIngestTar(t *testing.T) {
	testenv.RequireRoot(t) // a 0/0 device
	shadow := t.TempDir()
	layer := filepath.Join(shadow, "overlay", "L")
	long := "deep-\xff-" + strings.Repeat("n", 120) // a long name that is no UTF-8: PAX cannot hold it
	for _, d := range []string{"diff/a", "diff/b"} {
		if err := os.MkdirAll(filepath.Join(layer, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{"link": "ABC", "diff/a/f": "content", "diff/b/" + long: "long"}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(layer, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(layer, "diff/a/f"), filepath.Join(layer, "diff/b/g")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(layer, "diff/a/gone"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(filepath.Join(layer, "diff/a/f"), 0o4755); err != nil {
		t.Fatal(err)
	}
	nanos := time.Date(2020, 1, 2, 3, 4, 5, 123456789, time.UTC)
	for _, name := range []string{"diff/a/f", "diff/b/" + long} {
		if err := os.Chtimes(filepath.Join(layer, name), nanos, nanos); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(shadow, "marker"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}

	var buf bytes.Buffer
	if err := ingestTar(&buf, shadow, "a/b/images", []string{"marker"}, []string{"overlay/L"}); err != nil {
		t.Fatal(err)
	}
	var got []string
	tr := tar.NewReader(&buf)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		line := string(hdr.Typeflag) + " " + hdr.Name
		switch hdr.Typeflag {
		case tar.TypeLink:
			line += " -> " + hdr.Linkname
		case tar.TypeChar:
			if hdr.Devmajor != 0 || hdr.Devminor != 0 {
				line += " not 0/0"
			}
		case tar.TypeReg:
			if hdr.Name == "b/images/overlay/L/diff/a/f" && hdr.Mode != 0o4755 {
				line += " lost its setuid bit"
			}
			if hdr.Name == "b/images/overlay/L/diff/a/f" && !hdr.ModTime.Equal(nanos) {
				line += " mtime " + hdr.ModTime.String()
			}
			if strings.HasPrefix(hdr.Name, "b/images/overlay/L/diff/b/deep") && !hdr.ModTime.Equal(nanos.Truncate(time.Second)) {
				line += " mtime " + hdr.ModTime.String() + " (not UTF-8: GNU, whole seconds)"
			}
		}
		got = append(got, line)
	}
	want := []string{ // relative to "a", the first dir of the store's path
		"5 ./", "5 b/", "5 b/images/", "5 b/images/overlay/", // the dirs down to the store, then the store's
		"0 b/images/marker",
		"5 b/images/overlay/L/", "5 b/images/overlay/L/diff/", "5 b/images/overlay/L/diff/a/",
		"0 b/images/overlay/L/diff/a/f", "3 b/images/overlay/L/diff/a/gone",
		"5 b/images/overlay/L/diff/b/", "0 b/images/overlay/L/diff/b/" + long,
		"1 b/images/overlay/L/diff/b/g -> b/images/overlay/L/diff/a/f",
		"0 b/images/overlay/L/link",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("tar entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
