package unpack

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/cargohold/cargohold/internal/testenv"
	"github.com/cargohold/cargohold/internal/testimage"
)

const (
	benchSmallFiles = 4000
	benchRandomSize = 64 << 20
	benchZeroSize   = 256 << 20
)

// writeBenchLayer writes a synthetic layer: benchSmallFiles small files in 40 directories, a
// random file and a zero file (a preallocated image, which must become a hole).
func writeBenchLayer(w io.Writer, random []byte) error {
	var entries []testimage.Entry
	for d := 0; d < 40; d++ {
		dir := fmt.Sprintf("usr/share/pkg%02d/", d)
		entries = append(entries, testimage.Dir(dir, 0o755))
		for f := 0; f < benchSmallFiles/40; f++ {
			n := 200 + (d*131+f*977)%8000
			entries = append(entries, testimage.BinaryFile(fmt.Sprintf("%sfile%03d.txt", dir, f), 0o644, random[f*n:f*n+n]))
		}
	}
	entries = append(entries,
		testimage.BinaryFile("opt/random.bin", 0o644, random),
		testimage.SparseFile("var/lib/disk.img", 0o600, benchZeroSize, 0, nil))
	for i := range entries {
		entries[i].Header.ModTime = testTime
	}
	return testimage.WriteTar(w, entries)
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// BenchmarkLayer unpacks a synthetic layer of 355 MB (4000 small files, 64 MiB of random data and
// a 256 MiB zero-filled image). Run it on tmpfs to measure the unpacker rather than the disk:
//
//	TMPDIR=/dev/shm go test -run '^$' -bench Layer -benchtime 5x -count 5 ./builder/unpack/
//
// (On ext4, creating files right after many were deleted, as every iteration does, costs far more
// kernel time than the unpacker itself: ext4 scans for inodes not recently deleted.)
func BenchmarkLayer(b *testing.B) {
	testenv.RequireRoot(b)
	random := randomBytes(benchRandomSize, 7)
	var size countWriter
	if err := writeBenchLayer(&size, random); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size.n)
	b.ReportAllocs()
	tmp := b.TempDir()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		root := filepath.Join(tmp, fmt.Sprint(i))
		if err := os.Mkdir(root, 0o755); err != nil {
			b.Fatal(err)
		}
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(writeBenchLayer(pw, random)) }()
		b.StartTimer()

		res, err := Layer(b.Context(), pr, root, io.Discard, Options{})
		if err != nil {
			b.Fatal(err)
		}

		b.StopTimer()
		if res.DiffSize != size.n {
			b.Fatalf("DiffSize %d, want %d", res.DiffSize, size.n)
		}
		if err := os.RemoveAll(root); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
