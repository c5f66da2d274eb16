package main

import (
	"time"

	"github.com/cargohold/cargohold/layout"
	"github.com/urfave/cli/v2"
)

// The flags several commands share, each defined once here. Every flag of every command is bound to
// a field of its options struct (a Destination, or an Action for a flag whose absence matters), so
// that no command looks a flag up by name. A fresh flag each call: a cli.Flag keeps state.

// storeFlag is --store DIR. Only publish may leave it out (not required): the recipe names the store.
func storeFlag(dst *string, required bool) cli.Flag {
	usage := "the store `DIR` (made absolute)"
	if !required {
		usage = "store directory (default: the recipe's store)"
	}
	return &cli.StringFlag{Name: "store", Required: required, Usage: usage, Destination: dst}
}

// noWaitFlag is shared by the commands that take the writer lock.
func noWaitFlag(dst *bool) cli.Flag {
	return &cli.BoolFlag{Name: "no-wait", Destination: dst,
		Usage: "fail at once (exit 3) if another cargohold run holds the store's writer lock, instead of waiting"}
}

func dryRunFlag(dst *bool, what string) cli.Flag {
	return &cli.BoolFlag{Name: "dry-run", Destination: dst, Usage: "say what would be " + what + ", change nothing"}
}

// quietFlag is --quiet/-q: usage says what is still printed.
func quietFlag(dst *bool, usage string) cli.Flag {
	return &cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Destination: dst, Usage: usage}
}

// formatFlags are --format table|json, the one output switch of every command that prints a
// report, and --json, the same as --format json; json says whether JSON was asked for.
func formatFlags(json *bool) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "format", Value: "table", Usage: "`table` (lines for people) or json (one report; see README)",
			Action: func(_ *cli.Context, f string) error {
				switch f {
				case "table":
				case "json":
					*json = true
				default:
					return usageErrorf("--format %q: want table or json", f)
				}
				return nil
			}},
		&cli.BoolFlag{Name: "json", Usage: "the same as --format json", Action: func(*cli.Context, bool) error {
			*json = true
			return nil
		}},
	}
}

// platformFlag is --platform of the commands that only name a store (ls, inspect, rm, gc, check):
// the platform --store's placeholders stand for, as publish and conf expand them.
func platformFlag(dst *string) cli.Flag {
	return &cli.StringFlag{Name: "platform", Destination: dst, Usage: "`OS/ARCH[/VARIANT]` that {os}, {arch}, {variant} " +
		"and {platform} in --store stand for (default: this host's)"}
}

// graceFlag is gc's --grace: how long gc keeps what nodes may still use.
func graceFlag(dst *time.Duration, usage string) cli.Flag {
	return &cli.DurationFlag{Name: "grace", Value: layout.DefaultGrace, Usage: usage, Destination: dst}
}

// readGraceFlag is ls's and inspect's --grace, for when gc may remove a superseded image; without it
// (*dst nil) the grace period the store's last gc used (see layout.Snapshot.Grace).
func readGraceFlag(dst **time.Duration) cli.Flag {
	return &cli.DurationFlag{Name: "grace", Action: setPtr(dst), Usage: "gc's grace period `DURATION`, for when gc may remove a superseded image",
		DefaultText: "the one the store's last gc used, else " + layout.DefaultGrace.String()}
}

// setPtr is the Action of a flag whose absence matters (it then leaves *dst nil): it runs only when
// the flag is given, and points *dst at the value.
func setPtr[T any](dst **T) func(*cli.Context, T) error {
	return func(_ *cli.Context, v T) error {
		*dst = &v
		return nil
	}
}
