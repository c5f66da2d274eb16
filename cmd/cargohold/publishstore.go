package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/cargohold/cargohold/builder"
	"github.com/cargohold/cargohold/layout"
	"github.com/cargohold/cargohold/publish"
	"github.com/cargohold/cargohold/storageconf"
	"github.com/docker/go-units"
)

// publishStore publishes the requests of one store of the plan between its hooks. The before hook
// (a CVMFS transaction) runs before anything in the store is written; after or on-failure runs once
// the store is closed (deferred calls run last first). With [publish] cvmfs, the CVMFS publication
// takes the hooks' place (beginStore, finishStore).
func publishStore(ctx context.Context, opts publishOptions, plan *publish.Plan, s publish.Store, multi bool) (err error) {
	s.Hooks.Stdout, s.Hooks.Stderr = opts.out.stdout, opts.out.stderr
	if opts.json {
		s.Hooks.Stdout = opts.out.stderr // stdout carries the JSON report only
	}
	dir, storeOpts, err := beginStore(opts, s)
	if err != nil {
		return err
	}
	defer func() { err = finishStore(ctx, opts.out, s, err) }()
	if err := interruption(ctx, s.Refs()); err != nil {
		return err // the signal came while before ran
	}
	store, err := openStore(ctx, dir, storeOpts, s.Refs())
	if err != nil {
		return err
	}
	defer closeStore(store, &err)
	reportCleaned(opts.out, store)

	report, notDone := publishImages(ctx, opts, store, s, multi)
	if len(notDone) > 0 {
		if err := interruption(ctx, notDone); err != nil {
			return err
		}
		return fmt.Errorf("stopped (%w): not published: %s", ctx.Err(), strings.Join(notDone, ", "))
	}
	return endStore(ctx, opts, store, plan, &report)
}

// endStore ends a store's publish: extras (with a recipe), the JSON report, --register, and the
// exit status of the images.
func endStore(ctx context.Context, opts publishOptions, store *layout.Store, plan *publish.Plan, report *publishReport) error {
	if plan.Recipe {
		if err := handleExtras(ctx, opts, store, plan.Prune, report); err != nil {
			return err
		}
	}
	if opts.json {
		if err := opts.out.printJSON(report); err != nil {
			return err
		}
	}
	// The store is consistent whatever failed, so it is registered either way.
	if err := register(opts, store); err != nil {
		return err
	}
	if report.Failed > 0 {
		return &kindError{errFailed, fmt.Errorf("%d of %d images failed; the store %s holds the others", report.Failed, len(report.Images), store.Dir())}
	}
	return nil
}

// publishImages publishes each request and reports it; on a signal it stops and returns the
// references not published.
func publishImages(ctx context.Context, opts publishOptions, store *layout.Store, s publish.Store, multi bool) (publishReport, []string) {
	p := builder.Publisher{Store: store, Jobs: opts.jobs, CopyHardlinksAcrossDirs: s.CopyHardlinksAcrossDirs}
	report := publishReport{Store: store.Dir(), Driver: string(store.Driver()), Images: []imageReport{}}
	where := ""
	if multi {
		where = "  [" + store.Dir() + "]" // a run writing several stores names each line's
	}
	for i, req := range s.Requests {
		var endBars func()
		p.Progress, endBars = layerProgress(opts.out, opts.quiet || opts.json)
		res := p.Publish(ctx, req)
		endBars()
		if ctx.Err() != nil && res.Err != nil {
			return report, s.Refs()[i:]
		}
		report.add(res)
		printResult(opts, res, where)
	}
	return report, nil
}

// printResult prints one image's line, its warnings and its error.
func printResult(opts publishOptions, res builder.Result, where string) {
	for _, w := range res.Warnings {
		opts.out.errorf("warning: %s: %s%s", res.Ref, w, where)
	}
	if res.Err != nil {
		opts.out.errorf("error: %v%s", res.Err, where)
		return
	}
	if !opts.quiet && !opts.json {
		opts.out.printf("%-9s %s  %s  %d layers, %s fetched in %.1fs%s\n", res.Action, strings.Join(res.Names, ","),
			shortID(res.ImageID), res.LayersFetched, units.BytesSize(float64(res.BytesFetched)), res.Duration.Seconds(), where)
	}
}

// handleExtras reports the names the recipe no longer lists, and with --prune removes them when
// every image succeeded (publish.Extras decides).
func handleExtras(ctx context.Context, opts publishOptions, store *layout.Store, prune bool, report *publishReport) error {
	var keep []string
	for _, img := range report.Images {
		keep = append(keep, img.Names...)
	}
	extras := store.NamesExcept(keep)
	switch publish.Extras(extras, prune, report.Failed) {
	case publish.NoExtras:
		return nil
	case publish.ReportExtras:
		report.Extra = extras
		if !opts.json && !opts.quiet {
			opts.out.printf("extra     %s  (not in the recipe; --prune removes)\n", strings.Join(extras, ","))
		}
		return nil
	case publish.KeepForFailure:
		report.Extra = extras
		opts.out.errorf("not pruning %s: %d images of the recipe failed", strings.Join(extras, ","), report.Failed)
		return nil
	}
	for _, name := range extras {
		r, err := store.Remove(ctx, name, false)
		if err != nil {
			return storeError(fmt.Errorf("pruning %s: %w", name, err))
		}
		report.Pruned = append(report.Pruned, r)
		if !opts.quiet && !opts.json {
			opts.out.printf("pruned    %s  %s\n", name, shortID(r.ImageID))
		}
	}
	return nil
}

// register adds the store to --register's storage.conf.
func register(opts publishOptions, store *layout.Store) error {
	if opts.register == "" {
		return nil
	}
	changed, err := storageconf.Register(opts.register, store.Dir(), string(store.Driver()))
	if err != nil {
		return usageError(fmt.Errorf("registering the store in %s: %w", opts.register, err))
	}
	if changed && !opts.quiet && !opts.json {
		opts.out.printf("registered %s in %s\n", store.Dir(), opts.register)
	}
	return nil
}

// publishReport is what --json prints: the schema is documented in the README.
type publishReport struct {
	Store  string           `json:"store"`
	Driver string           `json:"driver"` // overlay or vfs
	Images []imageReport    `json:"images"`
	Failed int              `json:"failed"`
	Extra  []string         `json:"extra,omitempty"`  // names in the store the recipe does not list (not pruned)
	Pruned []layout.Removal `json:"pruned,omitempty"` // what --prune removed
}

type imageReport struct {
	Reference     string   `json:"reference"`
	Names         []string `json:"names"`
	ID            string   `json:"id,omitempty"`
	Digest        string   `json:"digest,omitempty"`
	Action        string   `json:"action"`
	LayersFetched int      `json:"layers_fetched"`
	BytesFetched  int64    `json:"bytes_fetched"`
	Seconds       float64  `json:"seconds"`
	Error         string   `json:"error,omitempty"`
	Warnings      []string `json:"warnings,omitempty"`
}

func (r *publishReport) add(res builder.Result) {
	ir := imageReport{Reference: res.Ref, Names: res.Names, ID: res.ImageID, Digest: res.ManifestDigest.String(),
		Action: string(res.Action), LayersFetched: res.LayersFetched, BytesFetched: res.BytesFetched,
		Seconds: res.Duration.Seconds(), Warnings: res.Warnings}
	if ir.Names == nil {
		ir.Names = []string{}
	}
	if res.Err != nil {
		ir.Error = res.Err.Error()
		r.Failed++
	}
	r.Images = append(r.Images, ir)
}
