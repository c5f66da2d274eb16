package builder

import "github.com/opencontainers/go-digest"

// ProgressKind says what happened to a layer.
type ProgressKind int

const (
	LayerSkipped  ProgressKind = iota // the store has it already: not fetched
	LayerStarted                      // fetching and unpacking began
	LayerProgress                     // more of the blob was read (Bytes so far)
	LayerDone                         // fetched, unpacked and verified (Bytes in all)
	LayerFailed                       // fetching or unpacking failed, or stopped because another layer failed
)

// ProgressEvent reports one step of a Publish, for a progress display (Publisher.Progress). The
// events of one layer come in order; those of different layers interleave.
type ProgressEvent struct {
	Ref   string // the Request's Ref
	Kind  ProgressKind
	Layer digest.Digest // the layer's blob digest
	Size  int64         // the blob's size as the manifest gives it; -1 if unknown
	Bytes int64         // blob bytes read so far
}

// progressStep is how many bytes a layer reads between two LayerProgress events: often enough
// for a display, rare enough to cost nothing next to the reads themselves.
const progressStep = 256 << 10

// progress sends the events of one image's layer to fn (nil: nowhere).
type progress struct {
	fn       func(ProgressEvent)
	ref      string
	layer    digest.Digest
	size     int64
	reported int64 // Bytes of the last LayerProgress event
}

func (p *progress) send(kind ProgressKind, bytes int64) {
	if p.fn == nil {
		return
	}
	size := p.size
	if size <= 0 {
		size = -1
	}
	p.fn(ProgressEvent{Ref: p.ref, Kind: kind, Layer: p.layer, Size: size, Bytes: bytes})
}

// read notes that n bytes have been read in all and reports it if a step was crossed. A nil p
// reports nothing.
func (p *progress) read(n int64) {
	if p != nil && p.fn != nil && n-p.reported >= progressStep {
		p.reported = n
		p.send(LayerProgress, n)
	}
}
