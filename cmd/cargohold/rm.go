package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/cargohold/cargohold/layout"
	"github.com/urfave/cli/v2"
)

func rmCommand() *cli.Command {
	return &cli.Command{
		Name:      "rm",
		Usage:     "take names or images out of the store (their layers stay until gc)",
		ArgsUsage: "IMAGE...   (a name removes that name, and the image once it has none left; an ID removes the image)",
		Flags: []cli.Flag{storeFlag(), noWaitFlag(),
			&cli.BoolFlag{Name: "dry-run", Usage: "say what would be removed, change nothing"},
			&cli.BoolFlag{Name: "json", Usage: "print a JSON report"}},
		Action: func(c *cli.Context) error {
			if c.Args().Len() == 0 {
				return cli.Exit("rm needs at least one IMAGE", exitUsage)
			}
			store, err := openStore(c)
			if err != nil {
				return err
			}
			defer store.Close()
			report := struct {
				Removed []layout.Removal `json:"removed"`
				Failed  []string         `json:"failed"`
			}{Removed: []layout.Removal{}, Failed: []string{}}
			for _, word := range c.Args().Slice() {
				r, err := store.Remove(word, c.Bool("dry-run"))
				if err != nil {
					fmt.Fprintln(c.App.ErrWriter, "error:", err)
					report.Failed = append(report.Failed, word)
					continue
				}
				report.Removed = append(report.Removed, r)
				if !c.Bool("json") {
					what := "untagged"
					if r.ImageRemoved {
						what = "removed"
					}
					fmt.Printf("%s%s %s %s\n", dryRunPrefix(c), what, shortID(r.ImageID), strings.Join(r.Names, ","))
				}
			}
			if c.Bool("json") {
				if err := printJSON(report); err != nil {
					return err
				}
			}
			if len(report.Failed) > 0 {
				return cli.Exit("", exitImageFailed)
			}
			return nil
		},
	}
}

func gcCommand() *cli.Command {
	return &cli.Command{
		Name:  "gc",
		Usage: "delete layers no image has used for longer than the grace period",
		Description: "A layer of a removed image may still be mounted by containers running on nodes, so it is\n" +
			"deleted only when it has been unused for --grace (the time it became unused is recorded in the\n" +
			"store by the first gc that sees it unused).",
		Flags: []cli.Flag{storeFlag(), noWaitFlag(),
			&cli.DurationFlag{Name: "grace", Value: 24 * time.Hour, Usage: "how long an unused layer is kept"},
			&cli.BoolFlag{Name: "dry-run", Usage: "say what would be deleted, change nothing"},
			&cli.BoolFlag{Name: "json", Usage: "print a JSON report"}},
		Action: func(c *cli.Context) error {
			store, err := openStore(c)
			if err != nil {
				return err
			}
			defer store.Close()
			report, err := store.GC(c.Duration("grace"), time.Now(), c.Bool("dry-run"))
			if err != nil {
				return cli.Exit(err, exitStore)
			}
			if c.Bool("json") {
				return printJSON(report)
			}
			for _, id := range report.Deleted {
				fmt.Printf("%sdeleted layer %s\n", dryRunPrefix(c), id)
			}
			for id, after := range report.Waiting {
				fmt.Printf("unused layer %s is kept until %s\n", id, after)
			}
			return nil
		},
	}
}

// openStore opens --store for writing, waiting for (or with --no-wait refusing) another run's lock.
func openStore(c *cli.Context) (*layout.Store, error) {
	store, err := layout.OpenWithOptions(c.String("store"), withLock(c, c.String("store"), layout.Options{}))
	if err != nil {
		return nil, cli.Exit(fmt.Errorf("opening store %s: %w", c.String("store"), err), exitStore)
	}
	return store, nil
}

func dryRunPrefix(c *cli.Context) string {
	if c.Bool("dry-run") {
		return "would have "
	}
	return ""
}
