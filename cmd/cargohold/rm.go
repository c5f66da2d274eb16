package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/cargohold/cargohold/layout"
	"github.com/urfave/cli/v2"
)

func newRmCommand() *cli.Command {
	return &cli.Command{
		Name:      "rm",
		Usage:     "take names or images out of the store (their layers stay until gc)",
		ArgsUsage: "IMAGE...   (a name removes that name, and the image once it has none left; an ID removes the image)",
		Flags: []cli.Flag{storeFlag(), noWaitFlag(), dryRunFlag("removed"), quietFlag(),
			&cli.BoolFlag{Name: "json", Usage: "print a JSON report"}},
		Action: func(c *cli.Context) error {
			return runRm(c.Context, rmOptions{writeOptions: writeOptionsOf(c), words: c.Args().Slice(), json: c.Bool("json")})
		},
	}
}

// writeOptions are those of the commands that change a store (rm, gc).
type writeOptions struct {
	out    output
	store  string
	noWait bool
	dryRun bool
	quiet  bool // print nothing on success
}

func writeOptionsOf(c *cli.Context) writeOptions {
	return writeOptions{out: outputOf(c), store: c.String("store"), noWait: c.Bool("no-wait"),
		dryRun: c.Bool("dry-run"), quiet: c.Bool("quiet")}
}

type rmOptions struct {
	writeOptions
	words []string // names or IDs
	json  bool
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
		r, err := store.Remove(ctx, word, opts.dryRun)
		if err != nil {
			opts.out.errorf("error: %v", err)
			report.Failed = append(report.Failed, word)
			continue
		}
		report.Removed = append(report.Removed, r)
		if !opts.json && !opts.quiet {
			what := "untagged"
			if r.ImageRemoved {
				what = "removed"
			}
			opts.out.printf("%s%s %s %s\n", dryRunPrefix(opts.dryRun), what, shortID(r.ImageID), strings.Join(r.Names, ","))
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

func newGcCommand() *cli.Command {
	return &cli.Command{
		Name:  "gc",
		Usage: "delete layers no image has used for longer than the grace period",
		Description: "A layer of a removed image may still be mounted by containers running on nodes, so it is\n" +
			"deleted only when it has been unused for --grace (the time it became unused is recorded in the\n" +
			"store by the first gc that sees it unused).",
		Flags: []cli.Flag{storeFlag(), noWaitFlag(), dryRunFlag("deleted"), quietFlag(),
			&cli.DurationFlag{Name: "grace", Value: 24 * time.Hour, Usage: "how long an unused layer is kept"},
			&cli.BoolFlag{Name: "json", Usage: "print a JSON report"}},
		Action: func(c *cli.Context) error {
			return runGc(c.Context, gcOptions{writeOptions: writeOptionsOf(c), grace: c.Duration("grace"), json: c.Bool("json")})
		},
	}
}

type gcOptions struct {
	writeOptions
	grace time.Duration
	json  bool
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
		opts.out.printf("%sremoved image %s (it had no name left)\n", dryRunPrefix(opts.dryRun), shortID(id))
	}
	for _, id := range report.Deleted {
		opts.out.printf("%sdeleted layer %s\n", dryRunPrefix(opts.dryRun), id)
	}
	for id, after := range report.Waiting {
		opts.out.printf("unused layer %s is kept until %s\n", id, after)
	}
	return nil
}

func dryRunFlag(what string) cli.Flag {
	return &cli.BoolFlag{Name: "dry-run", Usage: "say what would be " + what + ", change nothing"}
}

func quietFlag() cli.Flag {
	return &cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing on success (errors only)"}
}

// openExistingStore opens the store at dir for writing, waiting for (or with --no-wait refusing)
// another run's lock. It never creates one: a path that is not a store is an error.
func openExistingStore(ctx context.Context, out output, dir string, noWait bool) (*layout.Store, error) {
	if dir == "" {
		return nil, usageErrorf("no store: give --store DIR")
	}
	store, err := layout.OpenWithOptions(ctx, dir, withLock(out, noWait, dir, layout.Options{}))
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
