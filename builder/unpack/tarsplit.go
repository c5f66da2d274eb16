package unpack

import (
	"archive/tar"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"sync"

	tstar "github.com/vbatts/tar-split/archive/tar"
	"github.com/vbatts/tar-split/tar/storage"
)

// Recording tar-split metadata in the same pass that unpacks the layer.
//
// asm.NewInputTarStream records what this file records, but through an io.Pipe and a second
// goroutine that parses the stream once more: every byte is copied again, in 32 KiB hand-offs
// between goroutines, and its crc64 is computed byte by byte even for gigabytes of zeros. Here the
// extractor reads the stream with tar-split's own tar reader (whose RawAccounting keeps the raw
// header bytes, exactly as asm uses it) and feeds the same packer entries asm would: the raw bytes
// between file bodies as segments, each entry's name, size and body crc64, and what follows the
// end-of-archive marker. The JSON is the same, so Podman reassembles the layer byte for byte.

// addSegment records raw bytes of the stream that are not a file body (headers, padding).
func addSegment(p storage.Packer, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	_, err := p.AddEntry(storage.Entry{Type: storage.SegmentType, Payload: b})
	return err
}

// addFile records an entry as asm does: its name and size, and for a non-empty entry the crc64 of
// every body byte the tar reader returned (Podman checks it when it reassembles the layer).
func addFile(p storage.Packer, hdr *tstar.Header, body *entryBody) error {
	e := storage.Entry{Type: storage.FileType, Size: hdr.Size}
	if hdr.Size > 0 {
		e.Payload = binary.BigEndian.AppendUint64(nil, body.crc) // what hash/crc64's Sum gives
	}
	e.SetName(hdr.Name) // keeps names that are not UTF-8
	_, err := p.AddEntry(e)
	return err
}

// addTrailer records whatever the stream holds after the end-of-archive marker (often more zero
// blocks) as segments, in bounded chunks: an archive may end in any amount of padding.
func addTrailer(r io.Reader, p storage.Packer) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	for {
		n, err := r.Read(*bp)
		if aerr := addSegment(p, (*bp)[:n]); aerr != nil {
			return aerr
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// entryBody reads the current entry's body and keeps tar-split's crc64 of what was read.
type entryBody struct {
	r   io.Reader
	crc uint64 // as hash/crc64.Update takes and returns it
}

func (b *entryBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.crc = crcUpdate(b.crc, p[:n])
	return n, err
}

// drain reads what the extractor left of the body (the whole body of entries it does not write,
// e.g. whiteouts), so that the checksum covers it as asm's does.
func (b *entryBody) drain() error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	for {
		_, err := b.Read(*bp)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// crcUpdate is crc64.Update(crc, storage.CRCTable, p), with whole blocks of zeros (disk images,
// preallocated files) done in a few table lookups instead of one per byte.
func crcUpdate(crc uint64, p []byte) uint64 {
	for len(p) > 0 {
		n := min(len(p), holeBlock)
		if n == holeBlock && isZero(p[:n]) {
			crc = ^zeroBlockOp().apply(^crc)
		} else {
			crc = crc64.Update(crc, storage.CRCTable, p[:n])
		}
		p = p[n:]
	}
	return crc
}

// crcOp is a linear map on crc64 registers, as one table per register byte: a CRC register
// after a run of zero bytes is a GF(2)-linear function of the register before it.
type crcOp [8][256]uint64

func (op *crcOp) apply(x uint64) uint64 {
	var r uint64
	for i := range op {
		r ^= op[i][byte(x>>(8*i))]
	}
	return r
}

// twice returns op applied two times.
func (op *crcOp) twice() *crcOp {
	r := new(crcOp)
	for i := range op {
		for v := range op[i] {
			r[i][v] = op.apply(op[i][v])
		}
	}
	return r
}

// zeroBlockOp is what hash/crc64 does to its (inverted) register over holeBlock zero bytes.
var zeroBlockOp = sync.OnceValue(func() *crcOp {
	// One zero byte: the table-driven step of hash/crc64 with input byte 0.
	op := new(crcOp)
	for i := range op {
		for v := range op[i] {
			x := uint64(v) << (8 * i)
			op[i][v] = storage.CRCTable[byte(x)] ^ x>>8
		}
	}
	for n := 1; n < holeBlock; n *= 2 {
		op = op.twice()
	}
	return op
})

// stdHeader converts a header of tar-split's tar reader (a fork of archive/tar with the same
// fields) to the standard library's type, which the extractor and its helpers take.
func stdHeader(h *tstar.Header) *tar.Header {
	return &tar.Header{
		Typeflag:   h.Typeflag,
		Name:       h.Name,
		Linkname:   h.Linkname,
		Size:       h.Size,
		Mode:       h.Mode,
		Uid:        h.Uid,
		Gid:        h.Gid,
		Uname:      h.Uname,
		Gname:      h.Gname,
		ModTime:    h.ModTime,
		AccessTime: h.AccessTime,
		ChangeTime: h.ChangeTime,
		Devmajor:   h.Devmajor,
		Devminor:   h.Devminor,
		PAXRecords: h.PAXRecords,
		Format:     tar.Format(h.Format), // the same bit values in both packages
	}
}

// recordError marks a failure to write tar-split metadata (not a problem of the layer).
func recordError(err error) error {
	return fmt.Errorf("recording tar-split metadata: %w", err)
}
