package main

import (
	"context"
	"fmt"

	"github.com/cargohold/cargohold/layout"
	"github.com/urfave/cli/v2"
)

type checkOptions struct {
	out                        output
	store                      string
	platform                   string // what --store's placeholders stand for
	deep, repair, noWait, json bool
}

func newCheckCommand() *cli.Command {
	o := &checkOptions{}
	return &cli.Command{
		Name:  "check",
		Usage: "verify the store as Podman reads it; --repair makes the safe fixes",
		Description: "Checks the metadata (no name twice, layer IDs are chain IDs), then reads the store with\n" +
			"Podman's storage library: lock files, permissions for other users, every image's names, big\n" +
			"data digests, config and layers, link files, lower files and l/ symlinks. --deep also\n" +
			"regenerates every layer's content and compares it with its diff ID.\n" +
			"Without --repair it needs no write access and takes no lock (it works while a publish runs).\n" +
			"Leftovers of interrupted runs are listed but are no problem: readers never see them.\n" +
			"Exit status: 0 no problems, 3 problems found (or the store cannot be read or locked).",
		Flags: append([]cli.Flag{storeFlag(&o.store, true), platformFlag(&o.platform),
			&cli.BoolFlag{Name: "deep", Destination: &o.deep, Usage: "also regenerate every layer's diff and compare it with its diff ID (reads everything)"},
			&cli.BoolFlag{Name: "repair", Destination: &o.repair, Usage: "take the writer lock and remove leftovers, restore permissions and missing l/ links first"},
			noWaitFlag(&o.noWait),
		}, formatFlags(&o.json)...),
		Action: func(c *cli.Context) error {
			o.out = outputOf(c)
			if err := expandStore(&o.store, o.platform); err != nil {
				return err
			}
			return runCheck(c.Context, *o)
		},
	}
}

func runCheck(ctx context.Context, opts checkOptions) (err error) {
	if opts.store, err = realStore(opts.store); err != nil {
		return err
	}
	var repaired []string
	if opts.repair {
		if repaired, err = repairStore(ctx, opts); err != nil {
			return err
		}
	}
	report, err := layout.Check(ctx, opts.store, layout.CheckOptions{Deep: opts.deep})
	if err != nil {
		return storeError(fmt.Errorf("checking store %s: %w", opts.store, err))
	}
	if opts.json {
		out := struct {
			*layout.CheckReport
			Repaired []string `json:"repaired,omitempty"`
			OK       bool     `json:"ok"`
		}{report, repaired, report.OK()}
		if err := opts.out.printJSON(out); err != nil {
			return err
		}
	} else {
		printCheck(opts.out, opts.store, report, repaired)
	}
	if !report.OK() {
		return reported(errStore)
	}
	return nil
}

// repairStore takes the writer lock and makes the safe fixes; it returns what it did.
func repairStore(ctx context.Context, opts checkOptions) ([]string, error) {
	repaired, err := layout.RepairDir(ctx, opts.store, lockWait(opts.out, opts.noWait, opts.store))
	if err != nil {
		return nil, storeError(err)
	}
	return repaired, nil
}

func printCheck(out output, dir string, report *layout.CheckReport, repaired []string) {
	for _, r := range repaired {
		out.println("repaired  ", r)
	}
	for _, p := range report.Problems {
		out.println("problem   ", p)
	}
	for _, l := range report.Leftovers {
		out.printf("leftover   %s; harmless, the next publish or check --repair removes it\n", l)
	}
	if report.WriterPID != 0 {
		out.printf("note       a publish (pid %d) is writing the store: its work in progress is not listed\n", report.WriterPID)
	}
	kind := "ok"
	if !report.OK() {
		kind = fmt.Sprintf("problems: %d", len(report.Problems))
	}
	out.printf("%s: %s, %s: %s\n", dir, plural(report.Images, "image"), plural(report.Layers, "layer"), kind)
}

// lockWait is how an Open of the store at dir waits for the writer lock: as --no-wait says, and with a
// line on standard error while it waits, so that a cron job's log says why it sits there.
func lockWait(out output, noWait bool, dir string) layout.LockOptions {
	return layout.LockOptions{NoWait: noWait, Waiting: func(pid int) { out.errorf("%s", waitingLine(pid, dir)) }}
}

// waitingLine says why a run sits there: another run (pid, if known) holds the lock of the store at dir.
func waitingLine(pid int, dir string) string {
	holder := "another cargohold run"
	if pid > 0 {
		holder = fmt.Sprintf("another cargohold run (pid %d)", pid)
	}
	return fmt.Sprintf("waiting: %s is writing the store %s; --no-wait fails instead", holder, dir)
}
