package main

import (
	"strings"

	"github.com/cargohold/cargohold/builder"
	"github.com/cargohold/cargohold/publish"
	"github.com/docker/go-units"
)

// publishRenderer turns a publish run's events into text, progress bars and the --json report.
type publishRenderer struct {
	out         output
	quiet, json bool
	multi       bool // a run writing several stores names each line's
	err         error

	// The bars of the layers under way (see layerProgress): set on the first ImageStarted of a
	// store, before the goroutines that send LayerProgress events start, ended with its last image;
	// lines is where the image lines go meanwhile (above the bars).
	progress func(builder.ProgressEvent)
	endBars  func()
	lines    output
	pending  int // images started and not yet done or stopped
}

func (r *publishRenderer) observer() publish.Observer {
	obs := publish.Observer{Event: r.event, HookStdout: r.out.stdout, HookStderr: r.out.stderr}
	if r.json {
		obs.HookStdout = r.out.stderr // stdout carries the JSON report only
	}
	return obs
}

func (r *publishRenderer) event(e publish.Event) {
	switch e := e.(type) {
	case publish.LockWaiting:
		r.out.errorf("%s", waitingLine(e.HolderPID, e.Store))
	case publish.LeftoversRemoved:
		r.out.errorf("removed %d leftovers of an interrupted run (staging dirs, temp files, unrecorded layers)", len(e.Leftovers))
	case publish.ImageStarted:
		if r.pending == 0 {
			r.progress, r.endBars, r.lines = layerProgress(r.out, r.quiet || r.json)
		}
		r.pending++
	case publish.LayerProgress:
		if r.progress != nil {
			r.progress(e.ProgressEvent)
		}
	case publish.ImageStopped:
		r.imageEnded()
	case publish.ImageDone:
		r.printResult(e.Result, r.where(e.Store))
		r.imageEnded()
	case publish.ExtrasFound:
		r.printExtras(e)
	case publish.Pruned:
		kept := ""
		if e.Superseded {
			kept = "  (kept as " + strings.Join(e.KeptAs, ",") + " until gc's grace period has passed)"
		}
		r.printf("pruned    %s  %s%s\n", e.Name, shortID(e.ImageID), kept)
	case publish.StoreDone:
		if r.json && r.err == nil {
			r.err = r.out.printJSON(e.Report)
		}
	case publish.Registered:
		if e.Changed {
			r.printf("registered %s in %s\n", e.Store, e.File)
		}
	case publish.HookFailed:
		r.out.errorf("error: %v", e.Err)
	}
}

// imageEnded notes that an image is done or stopped; after the last one the bars end.
func (r *publishRenderer) imageEnded() {
	if r.pending--; r.pending == 0 {
		r.endBars()
		r.progress, r.lines = nil, r.out
	}
}

// printf prints a line of the text report: not with --quiet or --json.
func (r *publishRenderer) printf(format string, a ...any) {
	if !r.quiet && !r.json {
		r.out.printf(format, a...)
	}
}

func (r *publishRenderer) where(store string) string {
	if r.multi {
		return "  [" + store + "]"
	}
	return ""
}

// printResult prints one image's line, its warnings and its error.
func (r *publishRenderer) printResult(res builder.Result, where string) {
	out := r.lines // above the bars, while they are drawn
	if out.stdout == nil {
		out = r.out
	}
	for _, w := range res.Warnings {
		out.errorf("warning: %s: %s%s", res.Ref, w, where)
	}
	if res.Err != nil {
		out.errorf("error: %v%s", res.Err, where)
		return
	}
	if !r.quiet && !r.json {
		out.printf("%-9s %s  %s  %d layers, %s fetched in %.1fs%s\n", res.Action, strings.Join(res.Names, ","),
			shortID(res.ImageID), res.LayersFetched, units.BytesSize(float64(res.BytesFetched)), res.Duration.Seconds(), where)
	}
}

// printExtras says what becomes of the names the recipe no longer lists.
func (r *publishRenderer) printExtras(e publish.ExtrasFound) {
	names := strings.Join(e.Names, ",")
	switch e.Action {
	case publish.ReportExtras:
		r.printf("extra     %s  (not in the recipe; --prune removes)\n", names)
	case publish.KeepForFailure:
		r.out.errorf("not pruning %s: %d images of the recipe failed", names, e.Failed)
	}
}
