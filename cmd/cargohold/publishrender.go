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
	multi       bool // a run writing several stores, or a store the recipe gave as a relative path, names each line's
	err         error

	// The bars of the layers under way (see layerProgress): set on the first ImageStarted of a
	// store, before the goroutines that send LayerProgress events start, ended with its last image;
	// lines is where the image lines go meanwhile (above the bars).
	progress func(builder.ProgressEvent)
	endBars  func()
	lines    output
	pending  int  // images started and not yet done or stopped
	failed   bool // an image of the store failed or stopped (--quiet then shows the held notes)
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
	case publish.RepositoryRecovered:
		r.out.errorf("warning: %s", e.Message)
	case publish.LeftoversRemoved:
		r.out.errorf("removed %d leftovers of an interrupted run (staging dirs, temp files, unrecorded layers)", len(e.Leftovers))
	case publish.ImageStarted:
		r.imageStarted()
	case publish.LayerProgress:
		if r.progress != nil {
			r.progress(e.ProgressEvent)
		}
	case publish.ImageRetrying: // from the goroutines of the images under way, after every ImageStarted
		if !r.quiet { // --quiet: only if the image fails (printResult)
			r.lines.errorf("warning: %s: %s%s", e.Ref, e.Message, r.where(e.Store))
		}
	case publish.ImageStopped:
		r.imageEnded(true)
	case publish.ImageDone:
		r.printResult(e.Result, r.where(e.Store))
		r.imageEnded(e.Err != nil)
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

// imageStarted notes that an image starts; the first of a store starts the bars. With --quiet, the
// image library's notes (a blob read that reconnected) are held until the store's last image ends,
// and shown only if an image failed: a retry that worked is no news to a cron job. (Its notes name
// no image, and images are published at once, so they are held per store, not per image.)
func (r *publishRenderer) imageStarted() {
	if r.pending == 0 {
		r.progress, r.endBars, r.lines = layerProgress(r.out, r.quiet || r.json)
		if r.quiet {
			libraryLogs.hold()
			r.failed = false
		}
	}
	r.pending++
}

// imageEnded notes that an image is done or stopped; after the last one the bars end, and the
// held notes are shown if an image failed.
func (r *publishRenderer) imageEnded(failed bool) {
	r.failed = r.failed || failed
	if r.pending--; r.pending == 0 {
		r.endBars()
		r.progress, r.lines = nil, r.out
		if r.quiet {
			libraryLogs.release(r.failed)
		}
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

// printResult prints one image's line, its warnings and its error (with --quiet, after the
// retries that came before it; without, those were printed as they happened). It prints to r.lines
// (above the bars, while they are drawn), which is set: publish.Run sends an image's ImageDone after
// its ImageStarted (publish/events.go), as it sends ImageRetrying, which prints there too.
func (r *publishRenderer) printResult(res builder.Result, where string) {
	out := r.lines
	for _, w := range res.Warnings {
		out.errorf("warning: %s: %s%s", res.Ref, w, where)
	}
	if res.Err != nil {
		if r.quiet {
			for _, retry := range res.Retries {
				out.errorf("warning: %s: %s%s", res.Ref, retry, where)
			}
		}
		out.errorf("error: %v%s", res.Err, where)
		return
	}
	if !r.quiet && !r.json {
		shared := ""
		if res.BytesShared > 0 {
			shared = ", " + units.BytesSize(float64(res.BytesShared)) + " shared"
		}
		out.printf("%-9s %s  %s  %s, %s fetched%s in %.1fs%s\n", res.Action, strings.Join(res.Names, ","), shortID(res.ImageID),
			plural(res.LayersFetched, "layer"), units.BytesSize(float64(res.BytesFetched)), shared, res.Duration.Seconds(), where)
	}
}

// printExtras says what becomes of the names the recipe no longer lists.
func (r *publishRenderer) printExtras(e publish.ExtrasFound) {
	names := strings.Join(e.Names, ",")
	switch e.Action {
	case publish.ReportExtras:
		r.printf("extra     %s  (not in the recipe; --prune removes)\n", names)
	case publish.KeepForFailure:
		r.out.errorf("not pruning %s: %s of the recipe failed", names, plural(e.Failed, "image"))
	}
}
