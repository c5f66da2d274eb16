package main

import (
	"fmt"
	"os"

	"github.com/cargohold/cargohold/layout"
	"github.com/urfave/cli/v2"
)

func checkCommand() *cli.Command {
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
		Flags: []cli.Flag{storeFlag(),
			&cli.BoolFlag{Name: "deep", Usage: "also regenerate every layer's diff and compare it with its diff ID (reads everything)"},
			&cli.BoolFlag{Name: "repair", Usage: "take the writer lock and remove leftovers, restore permissions and missing l/ links first"},
			noWaitFlag(),
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
		},
		Action: runCheck,
	}
}

func runCheck(c *cli.Context) error {
	dir := c.String("store")
	var repaired []string
	if c.Bool("repair") {
		store, err := layout.OpenWithOptions(dir, withLock(c, dir, layout.Options{}))
		if err != nil {
			return cli.Exit(fmt.Errorf("opening store %s: %w", dir, err), exitStore)
		}
		for _, l := range store.Cleaned() {
			repaired = append(repaired, "removed "+l.String())
		}
		done, err := store.Repair()
		repaired = append(repaired, done...)
		if cerr := store.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return cli.Exit(fmt.Errorf("repairing store %s: %w", dir, err), exitStore)
		}
	}
	report, err := layout.Check(dir, layout.CheckOptions{Deep: c.Bool("deep")})
	if err != nil {
		return cli.Exit(fmt.Errorf("checking store %s: %w", dir, err), exitStore)
	}

	if c.Bool("json") {
		out := struct {
			*layout.CheckReport
			Repaired []string `json:"repaired,omitempty"`
			OK       bool     `json:"ok"`
		}{report, repaired, report.OK()}
		if err := printJSON(out); err != nil {
			return err
		}
	} else {
		for _, r := range repaired {
			fmt.Println("repaired  ", r)
		}
		for _, p := range report.Problems {
			fmt.Println("problem   ", p)
		}
		for _, l := range report.Leftovers {
			fmt.Printf("leftover   %s; harmless, the next publish or check --repair removes it\n", l)
		}
		if report.WriterPID != 0 {
			fmt.Printf("note       a publish (pid %d) is writing the store: its work in progress is not listed\n", report.WriterPID)
		}
		kind := "ok"
		if !report.OK() {
			kind = fmt.Sprintf("problems: %d", len(report.Problems))
		}
		fmt.Printf("%s: %d images, %d layers: %s\n", dir, report.Images, report.Layers, kind)
	}
	if !report.OK() {
		return cli.Exit("", exitStore)
	}
	return nil
}

// noWaitFlag is shared by the commands that take the writer lock.
func noWaitFlag() cli.Flag {
	return &cli.BoolFlag{Name: "no-wait", Usage: "fail at once (exit 3) if another cargohold run holds the store's writer lock, instead of waiting"}
}

// withLock sets how opts's Open of dir waits for the writer lock: as --no-wait says, and with a line on
// standard error while it waits, so that a cron job's log says why it sits there.
func withLock(c *cli.Context, dir string, opts layout.Options) layout.Options {
	opts.Lock = layout.LockOptions{
		NoWait: c.Bool("no-wait"),
		Waiting: func(pid int) {
			holder := "another cargohold run"
			if pid > 0 {
				holder = fmt.Sprintf("another cargohold run (pid %d)", pid)
			}
			fmt.Fprintf(os.Stderr, "waiting: %s is writing the store %s; --no-wait fails instead\n", holder, dir)
		},
	}
	return opts
}

// reportCleaned says on standard error what Open removed that an interrupted run left behind.
func reportCleaned(store *layout.Store) {
	if n := len(store.Cleaned()); n > 0 {
		fmt.Fprintf(os.Stderr, "removed %d leftovers of an interrupted run (staging dirs, temp files, unrecorded layers)\n", n)
	}
}
