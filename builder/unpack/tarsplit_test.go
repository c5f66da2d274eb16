package unpack

import (
	"archive/tar"
	"bytes"
	"hash/crc64"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/cargohold/cargohold/internal/testenv"
	"github.com/cargohold/cargohold/internal/testimage"
	"github.com/vbatts/tar-split/tar/asm"
	"github.com/vbatts/tar-split/tar/storage"
)

func TestCRCUpdateMatchesHashCRC64(t *testing.T) {
	rnd := randomBytes(3*holeBlock+11, 3)
	zeros := make([]byte, 4*holeBlock+100)
	mixed := slices.Concat(rnd[:holeBlock/2], zeros, rnd[:7], zeros[:holeBlock])
	for name, data := range map[string][]byte{"random": rnd, "zeros": zeros, "mixed": mixed, "empty": nil} {
		t.Run(name, func(t *testing.T) {
			for _, start := range []uint64{0, 1, 0xdeadbeefcafef00d, ^uint64(0)} {
				want := crc64.Update(start, storage.CRCTable, data)
				if got := crcUpdate(start, data); got != want {
					t.Errorf("%s from %#x: crcUpdate %#x, want %#x", name, start, got, want)
				}
				// In pieces that do not line up with holeBlock, as reads return them.
				got := start
				for rest := data; len(rest) > 0; {
					n := min(len(rest), holeBlock+333)
					got = crcUpdate(got, rest[:n])
					rest = rest[n:]
				}
				if got != want {
					t.Errorf("%s from %#x in pieces: %#x, want %#x", name, start, got, want)
				}
			}
		})
	}
}

// TestTarSplitMatchesAsm: the metadata recorded in the unpacking pass is byte for byte what
// tar-split's asm (and so containers/storage) records, also for zero runs (the crc shortcut),
// bodies the extractor does not write (a whiteout with content), reads of odd sizes, and
// padding after the end-of-archive marker. Equal metadata means equal crc64s, so Podman's
// reassembly (TestTarSplitRoundTrip) accepts the files.
func TestTarSplitMatchesAsm(t *testing.T) {
	testenv.RequireRoot(t)
	long := strings.Repeat("long-directory-name/", 12) + "file"
	big := make([]byte, 5*holeBlock+17)
	copy(big[2*holeBlock+5:], "data between zero blocks")
	stream := makeTar(t,
		testimage.Dir("./", 0o755),
		testimage.Dir("data/", 0o755),
		testimage.Entry{Header: tar.Header{Typeflag: tar.TypeReg, Name: "data/big.img", Mode: 0o644}, Data: big},
		testimage.Entry{Header: tar.Header{Typeflag: tar.TypeReg, Name: "data/random", Mode: 0o644}, Data: randomBytes(holeBlock+3, 4)},
		testimage.Entry{Header: tar.Header{Typeflag: tar.TypeReg, Name: "data/.wh.gone", Mode: 0o644}, Data: []byte("whiteouts may carry a body")},
		testimage.Entry{Header: tar.Header{Typeflag: tar.TypeReg, Name: "data/empty", Mode: 0o644}},
		testimage.Hardlink("data/link", "data/random"),
		testimage.Symlink("data/sym", "random"),
		testimage.File(long, 0o600, "long"),
	)
	stream = append(stream, make([]byte, 3*512)...)

	// Both record one trailer segment per read, so each gets the same kind of reader.
	for name, reader := range map[string]func() io.Reader{
		"whole reads": func() io.Reader { return bytes.NewReader(stream) },
		"half reads":  func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream)) },
		"byte reads":  func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) },
	} {
		t.Run(name, func(t *testing.T) {
			var want bytes.Buffer
			payload, done, err := asm.NewInputTarStreamWithDone(reader(), storage.NewJSONPacker(&want), nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, payload); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			e := newEnv(t)
			var ts bytes.Buffer
			if _, err := Layer(t.Context(), reader(), e.root, &ts, Options{}); err != nil {
				t.Fatalf("Layer: %v", err)
			}
			if !bytes.Equal(ts.Bytes(), want.Bytes()) {
				t.Errorf("tar-split metadata differs from asm's:\n%s\nwant:\n%s", ts.Bytes(), want.Bytes())
			}
			checkContent(t, e.path("data/big.img"), string(big))
		})
	}
}
