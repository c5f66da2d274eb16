package main

import (
	"os"
	"sync"
	"time"

	"github.com/cargohold/cargohold/builder"
	"github.com/opencontainers/go-digest"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// Progress on a terminal: one bar per layer on standard error, drawn by mpb as `podman pull` draws
// its own ("Copying blob 1a2b3c4d5e6f  12.3MiB / 40.0MiB | 80.1 MiB/s"). mpb redraws them with
// cursor escapes (up a line, erase the rest of the screen), which only a terminal that
// understands them should get: off a terminal (cron, CI logs) and on TERM=dumb (Emacs shells,
// serial consoles) nothing is drawn, and the one line per finished image is the report. --quiet
// and --json silence the bars too.

// layerProgress returns a Publisher.Progress callback that draws the bars of the layers in flight
// (of all images being published), a function that ends the drawing, and the output to print
// lines to meanwhile: above the bars, where they go to the terminal the bars are drawn on. When
// no bars are wanted, the callback is nil, the end does nothing and the output is out.
func layerProgress(out output, silent bool) (func(builder.ProgressEvent), func(), output) {
	tty, ok := out.stderr.(*os.File)
	if silent || !ok || !term.IsTerminal(int(tty.Fd())) || os.Getenv("TERM") == "dumb" {
		return nil, func() {}, out
	}
	b := &layerBars{
		pool: mpb.New(mpb.WithWidth(40), mpb.WithOutput(tty)),
		bars: map[digest.Digest]*layerBar{},
	}
	lines := output{stdout: out.stdout, stderr: b.pool}
	if f, ok := out.stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		lines.stdout = b.pool
	}
	return b.event, b.finish, lines
}

type layerBars struct {
	pool *mpb.Progress
	mu   sync.Mutex // events come from the goroutines fetching the layers
	bars map[digest.Digest]*layerBar
}

type layerBar struct {
	*mpb.Bar
	last time.Time // of the previous event, for the speed estimate
}

func (b *layerBars) event(e builder.ProgressEvent) {
	b.mu.Lock()
	defer b.mu.Unlock()
	bar := b.bars[e.Layer]
	if bar == nil {
		bar = b.add(e)
	}
	switch e.Kind {
	case builder.LayerProgress:
		now := time.Now()
		bar.EwmaSetCurrent(e.Bytes, now.Sub(bar.last))
		bar.last = now
	case builder.LayerSkipped, builder.LayerDone:
		bar.SetCurrent(e.Bytes)
		bar.SetTotal(-1, true) // complete, at what was read
	case builder.LayerFailed:
		bar.Abort(false)
	}
}

// add creates the bar of a layer; its label says how the layer ended.
func (b *layerBars) add(e builder.ProgressEvent) *layerBar {
	const shortDigest = 12
	label := "Copying blob " + e.Layer.Encoded()[:shortDigest]
	done := label + " done"
	if e.Kind == builder.LayerSkipped {
		done = label + " skipped: already in the store"
	}
	counters := decor.CountersKibiByte("%.1f / %.1f")
	size := max(e.Size, 0) // 0: unknown to mpb
	if size == 0 {
		counters = decor.CurrentKibiByte("%.1f")
	}
	bar := &layerBar{last: time.Now(), Bar: b.pool.AddBar(size,
		mpb.BarRemoveOnComplete(), // the image's line says what became of it
		mpb.BarFillerClearOnComplete(),
		mpb.BarFillerClearOnAbort(),
		mpb.PrependDecorators(decor.OnAbort(decor.OnComplete(decor.Name(label), done), label+" failed")),
		mpb.AppendDecorators(
			decor.OnAbort(decor.OnComplete(counters, ""), ""),
			decor.OnAbort(decor.OnComplete(decor.Name(" | "), ""), ""),
			decor.OnAbort(decor.OnComplete(decor.EwmaSpeed(decor.SizeB1024(0), "% .1f", 30), ""), ""),
		),
	)}
	b.bars[e.Layer] = bar
	return bar
}

// finish stops the bars of layers that never ended (a publish that failed early) and waits until
// the last state is drawn.
func (b *layerBars) finish() {
	b.mu.Lock()
	for _, bar := range b.bars {
		if !bar.AbortedOrCompleted() {
			bar.Abort(false)
		}
	}
	b.mu.Unlock()
	b.pool.Wait()
}
