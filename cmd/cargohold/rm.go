package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/cargohold/cargohold/layout"
	"github.com/urfave/cli/v2"
)

// writeOptions are those of the commands that change a store (rm, gc).
type writeOptions struct {
	out      output
	store    string
	platform string // what --store's placeholders stand for
	noWait   bool
	dryRun   bool
	quiet    bool // print nothing on success
	json     bool
}

// writeFlags are rm's and gc's shared flags, bound to o, with the command's own before --format;
// what says what a dry run reports.
func writeFlags(o *writeOptions, what string, own ...cli.Flag) []cli.Flag {
	flags := []cli.Flag{storeFlag(&o.store, true), platformFlag(&o.platform), noWaitFlag(&o.noWait), dryRunFlag(&o.dryRun, what),
		quietFlag(&o.quiet, "print nothing on success (errors only)")}
	return append(append(flags, own...), formatFlags(&o.json)...)
}

type rmOptions struct {
	writeOptions
	words []string // the IMAGE arguments: names or IDs
	now   bool     // remove images left without names at once instead of superseding them
}

func newRmCommand() *cli.Command {
	o := &rmOptions{}
	return &cli.Command{
		Name:      "rm",
		Usage:     "take names or images out of the store (an image kept for running containers until gc)",
		ArgsUsage: "IMAGE...   (a name removes that name, and the image once it has none left; an ID removes the image)",
		Description: "An image that loses its last name is superseded, not removed: containers already running\n" +
			"from it on nodes stay inspectable, so it stays under its digested name (repo@sha256:...) until\n" +
			"a gc after the grace period removes it and its layers. --now removes it at once.",
		Flags: writeFlags(&o.writeOptions, "removed", &cli.BoolFlag{Name: "now", Destination: &o.now,
			Usage: "remove an image left without names at once instead of keeping it until gc"}),
		Action: func(c *cli.Context) error {
			o.out, o.words = outputOf(c), c.Args().Slice()
			if err := expandStore(&o.store, o.platform); err != nil {
				return err
			}
			return runRm(c.Context, *o)
		},
	}
}

func runRm(ctx context.Context, opts rmOptions) (err error) {
	if len(opts.words) == 0 {
		return usageErrorf("rm needs at least one IMAGE")
	}
	store, err := openExistingStore(ctx, opts.out, opts.store, opts.noWait)
	if err != nil {
		return err
	}
	defer closeStore(store, &err)
	report := struct {
		Removed []layout.Removal `json:"removed"`
		Failed  []string         `json:"failed"`
	}{Removed: []layout.Removal{}, Failed: []string{}}
	for _, word := range opts.words {
		r, err := store.Remove(ctx, word, layout.RemoveOptions{DryRun: opts.dryRun, Now: opts.now})
		if err != nil {
			opts.out.errorf("error: %v", err)
			report.Failed = append(report.Failed, word)
			continue
		}
		report.Removed = append(report.Removed, r)
		if !opts.json && !opts.quiet {
			opts.out.printf("%s%s\n", dryRunPrefix(opts.dryRun), removalLine(r))
		}
	}
	if opts.json {
		if err := opts.out.printJSON(report); err != nil {
			return err
		}
	}
	if len(report.Failed) > 0 {
		return reported(errFailed)
	}
	return nil
}

// removalLine says what Remove did: "untagged", "removed", or "superseded" with the names it is kept as.
func removalLine(r layout.Removal) string {
	switch {
	case r.ImageRemoved:
		return fmt.Sprintf("removed %s %s", shortID(r.ImageID), strings.Join(r.Names, ","))
	case r.Superseded:
		return fmt.Sprintf("superseded %s %s  (kept as %s for running containers until gc's grace period has passed)",
			shortID(r.ImageID), strings.Join(r.Names, ","), strings.Join(r.KeptAs, ","))
	}
	return fmt.Sprintf("untagged %s %s", shortID(r.ImageID), strings.Join(r.Names, ","))
}

type gcOptions struct {
	writeOptions
	grace time.Duration
}

func newGcCommand() *cli.Command {
	o := &gcOptions{}
	return &cli.Command{
		Name:  "gc",
		Usage: "remove superseded images and delete layers no image has used for longer than the grace period",
		Description: "Containers running on nodes may still use a superseded image (one left without names by a\n" +
			"moved tag or rm) and its layers, so gc removes such an image only --grace after it was superseded,\n" +
			"with the layers no other image uses, and deletes any other layer only when it has been unused for\n" +
			"--grace (the time it became unused is recorded in the store by the first gc that sees it unused).",
		Flags: writeFlags(&o.writeOptions, "deleted", graceFlag(&o.grace, "how long a superseded image or an unused layer is kept")),
		Action: func(c *cli.Context) error {
			o.out = outputOf(c)
			if err := expandStore(&o.store, o.platform); err != nil {
				return err
			}
			return runGc(c.Context, *o)
		},
	}
}

func runGc(ctx context.Context, opts gcOptions) (err error) {
	store, err := openExistingStore(ctx, opts.out, opts.store, opts.noWait)
	if err != nil {
		return err
	}
	defer closeStore(store, &err)
	report, err := store.GC(ctx, opts.grace, time.Now(), opts.dryRun)
	if err != nil {
		return storeError(err)
	}
	switch {
	case opts.json:
		return opts.out.printJSON(report)
	case opts.quiet:
		return nil
	}
	for _, id := range report.RemovedImages {
		opts.out.printf("%sremoved image %s (superseded, or without a name)\n", dryRunPrefix(opts.dryRun), shortID(id))
	}
	for id, after := range report.WaitingImages {
		opts.out.printf("superseded image %s is kept until %s\n", shortID(id), after)
	}
	for _, id := range report.Deleted {
		opts.out.printf("%sdeleted layer %s\n", dryRunPrefix(opts.dryRun), id)
	}
	for id, after := range report.Waiting {
		opts.out.printf("unused layer %s is kept until %s\n", id, after)
	}
	return nil
}

// openExistingStore opens the store at dir for writing, waiting for (or with --no-wait refusing)
// another run's lock. It never creates one: a path that is not a store is an error.
func openExistingStore(ctx context.Context, out output, dir string, noWait bool) (*layout.Store, error) {
	if dir == "" {
		return nil, usageErrorf("no store: give --store DIR")
	}
	dir, err := realStore(dir)
	if err != nil {
		return nil, err
	}
	store, err := layout.OpenWithOptions(ctx, dir, layout.Options{Lock: lockWait(out, noWait, dir)})
	if err != nil {
		return nil, storeError(fmt.Errorf("opening store %s: %w", dir, err))
	}
	return store, nil
}

// closeStore closes a store opened for writing, releasing its lock; a failure is the command's
// error if it had none.
func closeStore(store *layout.Store, err *error) {
	if cerr := store.Close(); cerr != nil && *err == nil {
		*err = storeError(fmt.Errorf("closing store %s: %w", store.Dir(), cerr))
	}
}

func dryRunPrefix(dryRun bool) string {
	if dryRun {
		return "would have "
	}
	return ""
}

// realStore is the store's path with its symlinks resolved: every command acts on, and reports,
// one path for one store however it was reached.
func realStore(dir string) (string, error) {
	real, err := layout.ResolveDir(dir)
	if err != nil {
		return "", storeError(err)
	}
	return real, nil
}
