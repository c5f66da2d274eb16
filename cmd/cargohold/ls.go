package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cargohold/cargohold/internal/errkind"
	"github.com/cargohold/cargohold/layout"
	"github.com/docker/go-units"
	"github.com/urfave/cli/v2"
)

// readOptions are those of the commands that only read a store (ls, inspect).
type readOptions struct {
	out      output
	store    string
	platform string         // what --store's placeholders stand for
	grace    *time.Duration // gc's, for when a superseded image may go; nil: the store's last gc's
	json     bool           // --format json
}

// readFlags are ls's and inspect's flags, bound to o.
func readFlags(o *readOptions) []cli.Flag {
	return append([]cli.Flag{storeFlag(&o.store, true), platformFlag(&o.platform), readGraceFlag(&o.grace)}, formatFlags(&o.json)...)
}

type lsOptions struct {
	readOptions
}

func newLsCommand() *cli.Command {
	o := &lsOptions{}
	return &cli.Command{
		Name:  "ls",
		Usage: "list the store's images",
		Description: "Reads the store without locking it, as Podman does: it works while a publish runs and\n" +
			"needs no write access. A superseded image (no name left: a moved tag, rm) is listed under its\n" +
			"digested name, with the time gc may remove it (after the grace period the store's last gc used).",
		Flags: readFlags(&o.readOptions),
		Action: func(c *cli.Context) error {
			o.out = outputOf(c)
			if err := expandStore(&o.store, o.platform); err != nil {
				return err
			}
			return runLs(c.Context, *o)
		},
	}
}

// shownImage is one image as ls and inspect show it: the image and, for a superseded one, when gc
// may remove it (see layout.Snapshot.Grace).
type shownImage struct {
	layout.ImageInfo
	GCAfter *time.Time `json:"gc_after,omitempty"`
}

func runLs(ctx context.Context, opts lsOptions) error {
	snap, grace, err := readStore(opts.readOptions)
	if err != nil {
		return err
	}
	infos, err := snap.Infos(ctx)
	if err != nil {
		return storeError(err)
	}
	images := make([]shownImage, len(infos))
	for i, info := range infos {
		images[i] = shownImage{info, info.GCAfter(grace)}
	}
	if opts.json {
		return opts.out.printJSON(images)
	}
	w := tabwriter.NewWriter(opts.out.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tIMAGE ID\tSIZE\tPLATFORM\tPUBLISHED\tSTATE")
	for _, img := range images {
		names := img.Names
		if len(names) == 0 {
			names = []string{"<none>"}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", strings.Join(names, ","), shortID(img.ID),
			units.HumanSize(float64(img.Size)), img.Platform, ago(img.Published), img.state())
	}
	return w.Flush()
}

// state is "current", or when the image was superseded and when gc may remove it.
func (img shownImage) state() string {
	if img.GCAfter == nil {
		return "current"
	}
	return fmt.Sprintf("superseded %s, gc after %s", strings.ToLower(ago(img.Superseded)), img.GCAfter.UTC().Format(time.RFC3339))
}

// ago is "3 hours ago", or "-" for no time.
func ago(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return units.HumanDuration(time.Since(*t)) + " ago"
}

type inspectOptions struct {
	readOptions
	images []string // the IMAGE arguments: exactly one
}

func newInspectCommand() *cli.Command {
	o := &inspectOptions{}
	return &cli.Command{
		Name:      "inspect",
		Usage:     "show one image: names, digests, platform, source, layers",
		ArgsUsage: "IMAGE   (name, name without registry, or ID)",
		Flags:     readFlags(&o.readOptions),
		Action: func(c *cli.Context) error {
			o.out, o.images = outputOf(c), c.Args().Slice()
			if err := expandStore(&o.store, o.platform); err != nil {
				return err
			}
			return runInspect(c.Context, *o)
		},
	}
}

func runInspect(ctx context.Context, opts inspectOptions) error {
	if len(opts.images) != 1 {
		return usageErrorf("inspect takes one IMAGE")
	}
	if err := context.Cause(ctx); err != nil {
		return err // a signal: inspect is quick, it stops before it starts
	}
	snap, grace, err := readStore(opts.readOptions)
	if err != nil {
		return err
	}
	img, err := snap.Find(opts.images[0])
	if err != nil {
		return errkind.With(errFailed, err)
	}
	info, err := snap.Info(img)
	if err != nil {
		return storeError(err)
	}
	shown := shownImage{info, info.GCAfter(grace)}
	if opts.json {
		return opts.out.printJSON(shown)
	}
	printInfo(opts.out, shown)
	return nil
}

func printInfo(out output, info shownImage) {
	out.printf("ID:        %s\nNames:     %s\nDigest:    %s\nPlatform:  %s\nCreated:   %s\nSize:      %s\n",
		info.ID, strings.Join(info.Names, ", "), info.Digest, info.Platform, info.Created.Format(time.RFC3339),
		units.HumanSize(float64(info.Size)))
	if info.Source != "" {
		out.printf("Source:    %s\n", info.Source)
	}
	if info.Published != nil {
		out.printf("Published: %s\n", info.Published.Format(time.RFC3339))
	}
	if info.GCAfter != nil {
		out.printf("Superseded: %s (no name left; kept for running containers until gc's grace period has passed)\n",
			info.Superseded.Format(time.RFC3339))
		out.printf("GC after:  %s\n", info.GCAfter.UTC().Format(time.RFC3339))
	}
	out.println("Layers (base first):")
	for _, l := range info.Layers {
		out.printf("  %s  %9s  from %s\n", l.DiffID, units.HumanSize(float64(l.Size)), l.CompressedDigest)
	}
}

// readStore reads the store and the grace period that says when gc may remove a superseded image.
func readStore(opts readOptions) (*layout.Snapshot, time.Duration, error) {
	snap, err := layout.Read(opts.store)
	if err != nil {
		return nil, 0, storeError(err)
	}
	grace, err := snap.Grace(opts.grace)
	if err != nil {
		return nil, 0, storeError(err)
	}
	return snap, grace, nil
}
