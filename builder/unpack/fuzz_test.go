package unpack

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"testing"

	"github.com/cargohold/cargohold/internal/testenv"
	"github.com/cargohold/cargohold/internal/testimage"
	"github.com/opencontainers/go-digest"
)

// FuzzLayer feeds arbitrary bytes to the unpacker as a layer's tar stream. Whatever the input, it
// must not panic or hang, must write nothing outside the layer root (a victim file beside it stays
// untouched, with no new links), must stay within the size limit, and when it succeeds it must
// report the digest and size of exactly the bytes it was given.
//
//	go test -run XXX -fuzz FuzzLayer -fuzztime 10m ./builder/unpack   (as root, like the other tests)
func FuzzLayer(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	const limit = 1 << 20
	f.Fuzz(func(t *testing.T, data []byte) {
		testenv.RequireRoot(t)
		e := newEnv(t)
		var ts bytes.Buffer
		res, err := Layer(t.Context(), bytes.NewReader(data), e.root, &ts, Options{MaxSize: limit})
		e.checkOutside(t)
		if err != nil {
			if len(data) > limit && !errors.Is(err, ErrTooLarge) && res.DiffSize > limit {
				t.Errorf("read %d bytes past the limit: %v", res.DiffSize, err)
			}
			return
		}
		if len(data) > limit {
			t.Fatalf("accepted %d bytes with a limit of %d", len(data), limit)
		}
		if want := digest.FromBytes(data); res.DiffID != want || res.DiffSize != int64(len(data)) {
			t.Errorf("result %s, %d bytes; the input is %s, %d bytes", res.DiffID, res.DiffSize, want, len(data))
		}
	})
}

// fuzzSeeds are layers of every entry kind, and the hostile streams of TestHostile.
func fuzzSeeds(f *testing.F) [][]byte {
	seeds := [][]byte{
		{},
		make([]byte, 1024), // just the end-of-archive marker
		makeTar(f, testimage.Dir("a/", 0o755), testimage.File("a/f", 0o644, "hello"), testimage.Symlink("a/l", "f"), testimage.Hardlink("a/h", "a/f"),
			testimage.File("a/.wh.gone", 0o644, ""), testimage.Dir("o/", 0o755), testimage.File("o/.wh..wh..opq", 0o644, ""),
			testimage.Entry{Header: tar.Header{Typeflag: tar.TypeFifo, Name: "p", Mode: 0o600}},
			testimage.Entry{Header: tar.Header{Typeflag: tar.TypeChar, Name: "c", Mode: 0o600, Devmajor: 1, Devminor: 3}},
			testimage.Entry{Header: tar.Header{Typeflag: tar.TypeReg, Name: "x", Mode: 0o4755,
				PAXRecords: map[string]string{"SCHILY.xattr.user.k": "v"}}, Data: []byte("suid")}),
		makeTar(f, testimage.File("../outside/victim", 0o644, "escape")),
		makeTar(f, testimage.Symlink("up", "../outside"), testimage.File("up/victim", 0o644, "through a symlink")),
		makeTar(f, testimage.Symlink("abs", "/"), testimage.File("abs/etc/x", 0o644, "absolute")),
		makeTar(f, testimage.Hardlink("h", "../outside/victim")),
		makeTar(f, testimage.Hardlink("early", "late"), testimage.File("late", 0o644, "")),
		makeTar(f, testimage.File("a/.wh...", 0o644, "")),
		makeTar(f, testimage.File("d", 0o644, "file"), testimage.Dir("d/", 0o755), testimage.File("d/f", 0o644, "replaced")),
		makeTar(f, testimage.Symlink("loop1", "loop2"), testimage.Symlink("loop2", "loop1"), testimage.File("loop1/x", 0o644, "")),
	}
	full := makeTar(f, testimage.File("f", 0o644, "some content to cut"))
	seeds = append(seeds, full[:700], full[:len(full)-1])
	var gz bytes.Buffer // a compressed layer where a tar one is expected
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(full); err != nil {
		f.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		f.Fatal(err)
	}
	return append(seeds, gz.Bytes())
}
