package builder

import (
	"slices"
	"sync"
	"testing"

	"github.com/cargohold/cargohold/internal/testenv"
	"github.com/cargohold/cargohold/internal/testimage"
	"github.com/opencontainers/go-digest"
)

// progressLog collects events as a display would, from several goroutines.
type progressLog struct {
	mu     sync.Mutex
	events []ProgressEvent
}

func (l *progressLog) add(e ProgressEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

// kinds returns the kinds of the events of one layer, in order.
func (l *progressLog) kinds(layer digest.Digest) []ProgressKind {
	var ks []ProgressKind
	for _, e := range l.events {
		if e.Layer == layer && (len(ks) == 0 || e.Kind != LayerProgress || ks[len(ks)-1] != LayerProgress) {
			ks = append(ks, e.Kind) // runs of LayerProgress count once
		}
	}
	return ks
}

func TestProgressEvents(t *testing.T) {
	testenv.RequireRoot(t)
	fx := fixtures
	store, _ := openStore(t)
	var log progressLog
	p := &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t)}, Progress: log.add}

	app := fx.written["app:1"]
	mustPublish(t, p, fx.ref("app:1"), "localhost/cargotest/app:1")
	for _, l := range app.Layers {
		ks := log.kinds(l.Digest)
		if ks[0] != LayerStarted || ks[len(ks)-1] != LayerDone || slices.Contains(ks, LayerFailed) || slices.Contains(ks, LayerSkipped) {
			t.Errorf("layer %s: events %v, want started, progress, done", l.Digest, ks)
		}
		var last ProgressEvent
		for _, e := range log.events {
			if e.Layer == l.Digest {
				if e.Bytes < last.Bytes {
					t.Errorf("layer %s: bytes went back from %d to %d", l.Digest, last.Bytes, e.Bytes)
				}
				last = e
			}
		}
		if last.Bytes != l.Size || last.Size != l.Size || last.Ref != fx.ref("app:1") {
			t.Errorf("layer %s: last event %+v, want done with %d bytes of %d", l.Digest, last, l.Size, l.Size)
		}
	}
	big := slices.MaxFunc(app.Layers, func(a, b testimage.LayerBlob) int { return int(a.Size - b.Size) })
	if big.Size > progressStep && !slices.Contains(log.kinds(big.Digest), LayerProgress) {
		t.Errorf("layer %s (%d bytes): no progress events", big.Digest, big.Size)
	}

	// other:1 shares the base layer: it is skipped, not fetched.
	log = progressLog{}
	mustPublish(t, p, fx.ref("other:1"), "localhost/cargotest/other:1")
	other := fx.written["other:1"]
	if ks := log.kinds(other.Layers[0].Digest); !slices.Equal(ks, []ProgressKind{LayerSkipped}) {
		t.Errorf("shared base layer: events %v, want only skipped", ks)
	}
	if ks := log.kinds(other.Layers[1].Digest); len(ks) == 0 || ks[len(ks)-1] != LayerDone {
		t.Errorf("own layer: events %v, want it done", ks)
	}
}
