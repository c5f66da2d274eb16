package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/cargohold/cargohold/layout"
	"github.com/cargohold/cargohold/recipe"
	"github.com/cargohold/cargohold/storageconf"
	"github.com/urfave/cli/v2"
)

func newConfCommand() *cli.Command {
	return &cli.Command{
		Name:  "conf",
		Usage: "register a store with Podman (storage.conf snippets, patches, drop-ins, user files, checks)",
		Description: "A store is used once storage.conf names it in [storage.options] additionalimagestores.\n" +
			"Rootful Podman reads /etc/containers/storage.conf; rootless Podman up to 5.x reads only the\n" +
			"user's own file (conf user); Podman 6+ also reads storage.conf.d drop-ins (conf dropin).",
		Subcommands: []*cli.Command{
			newConfSnippetCommand(), newConfPatchCommand(), newConfDropinCommand(), newConfUserCommand(), newConfCheckCommand(),
		},
	}
}

// Flags shared by the subcommands (fresh values each: a cli.Flag keeps state).
func storeFlag() cli.Flag {
	return &cli.StringFlag{Name: "store", Required: true, Usage: "the store `DIR` (made absolute)"}
}
func driverFlag() cli.Flag {
	return &cli.StringFlag{Name: "driver", Usage: "the store's storage `DRIVER`: overlay or vfs (default: the store's own; overlay for a store not written yet)"}
}
func removeFlag() cli.Flag { return &cli.BoolFlag{Name: "remove", Usage: "take the store out instead"} }
func backupFlag() cli.Flag {
	return &cli.BoolFlag{Name: "backup", Usage: "keep the previous content as FILE.bak when the file changes"}
}
func missingOKFlag() cli.Flag {
	return &cli.BoolFlag{Name: "allow-missing-store", Usage: "register a path that is not a cargohold store here (yet) " +
		"(every Podman command fails until it is one)"}
}

// confOptions are what every conf subcommand needs: the store as this node sees it and its driver.
type confOptions struct {
	out    output
	store  string // absolute, a platform template expanded for this host
	driver string // --driver, else the store's own, else overlay
	remove bool
	backup bool
}

// confOptionsOf reads the shared flags. A subcommand that adds the store to a file (registers)
// refuses a path that is not a cargohold store (Podman fails altogether while a listed store is
// missing, and would write its own files into a foreign directory), unless --allow-missing-store;
// the others only warn.
func confOptionsOf(c *cli.Context, registers bool) (confOptions, error) {
	opts := confOptions{out: outputOf(c), remove: c.Bool("remove"), backup: c.Bool("backup")}
	store, err := recipe.StorePath(c.String("store"), "")
	if err == nil {
		store, err = filepath.Abs(store)
	}
	if err == nil {
		err = storageconf.CheckStorePath(store)
	}
	if err != nil {
		return opts, usageError(err)
	}
	opts.store = store
	found, identityErr := identify(store)
	if opts.driver = c.String("driver"); opts.driver == "" {
		opts.driver = found
	}
	if _, err := layout.ParseDriver(opts.driver); err != nil {
		return opts, usageError(err)
	}
	// A store read with the other driver shows nothing, and Podman 5.8 then writes its own dirs into it.
	if identityErr == nil && opts.driver != found && !opts.remove {
		return opts, fmt.Errorf("%s is a %s store; Podman with driver %q cannot read it (leave --driver out): %w",
			store, found, opts.driver, layout.ErrWrongDriver)
	}
	switch {
	case identityErr == nil, opts.remove, c.Bool("allow-missing-store"):
	case registers:
		return opts, usageError(fmt.Errorf("%w; give --allow-missing-store to register it anyway", identityErr))
	default:
		opts.out.errorf("warning: %v", identityErr)
	}
	return opts, nil
}

// identify is the driver of the cargohold store at dir (overlay when it is not one), and why it
// is not one.
func identify(dir string) (string, error) {
	if err := storageconf.CheckStoreDir(dir); err != nil {
		return string(layout.Overlay), err // "no such file or directory"
	}
	d, err := layout.Identify(dir)
	if err != nil {
		return string(layout.Overlay), err
	}
	return string(d), nil
}

func newConfSnippetCommand() *cli.Command {
	return &cli.Command{
		Name:  "snippet",
		Usage: "print the storage.conf lines that register the store",
		Flags: []cli.Flag{storeFlag(), driverFlag(), missingOKFlag(),
			&cli.BoolFlag{Name: "dropin", Usage: "print a storage.conf.d drop-in instead (Podman 6+)"}},
		Action: func(c *cli.Context) error {
			opts, err := confOptionsOf(c, false)
			if err != nil {
				return err
			}
			return runConfSnippet(c.Context, opts, c.Bool("dropin"))
		},
	}
}

func runConfSnippet(_ context.Context, opts confOptions, dropin bool) error {
	var text string
	var err error
	if dropin {
		text, err = storageconf.DropInSnippet(opts.store)
	} else {
		text, err = storageconf.Snippet(opts.store, opts.driver)
	}
	if err != nil {
		return usageError(err)
	}
	opts.out.printf("%s", text)
	return nil
}

func newConfPatchCommand() *cli.Command {
	return &cli.Command{
		Name:  "patch",
		Usage: "add the store to a storage.conf in place (comments and everything else kept byte for byte)",
		Description: "Idempotent: a second run changes nothing. The file is written atomically with its mode and\n" +
			"owner kept. A missing file is created (with its missing parent directories) from the\n" +
			"distribution's default (" + storageconf.DistributionFile + ") or, without one, as a minimal file.",
		Flags: []cli.Flag{storeFlag(), driverFlag(), removeFlag(), backupFlag(), missingOKFlag(),
			&cli.StringFlag{Name: "file", Value: storageconf.SystemFile, Usage: "the storage.conf `FILE` to edit"},
			&cli.StringFlag{Name: "base", Usage: "`FILE` a missing --file starts as (default: the distribution's, if any)"},
		},
		Action: func(c *cli.Context) error {
			opts, err := confOptionsOf(c, !c.Bool("remove"))
			if err != nil {
				return err
			}
			return runConfPatch(c.Context, opts, c.String("file"), c.String("base"))
		},
	}
}

func runConfPatch(_ context.Context, opts confOptions, file, base string) error {
	so := storageconf.Options{Driver: opts.driver, Backup: opts.backup, Base: base, MakeDirs: true}
	if opts.remove {
		r, err := storageconf.RemoveStore(file, opts.store, so)
		return printChange(opts, r, err)
	}
	r, err := storageconf.AddStore(file, opts.store, so)
	return printChange(opts, r, err)
}

// printChange prints what a change did, one line (plus warnings), or fails.
func printChange(opts confOptions, r storageconf.Result, err error) error {
	if err != nil {
		return usageError(err)
	}
	store, out := opts.store, opts.out
	switch {
	case r.Deleted:
		out.printf("removed %s: deleted %s, which cargohold had created\n", store, r.File)
	case r.Restored != "":
		out.printf("removed %s from %s: restored as it was before cargohold (from %s, now removed)\n", store, r.File, r.Restored)
	case opts.remove && r.Changed:
		out.printf("removed %s from %s\n", store, r.File)
	case opts.remove:
		out.printf("unchanged: %s does not list %s\n", r.File, store)
	case r.Created && r.Base != "":
		out.printf("created %s from %s, listing %s\n", r.File, r.Base, store)
	case r.Created:
		out.printf("created %s listing %s\n", r.File, store)
	case r.Changed:
		out.printf("added %s to %s\n", store, r.File)
	default:
		out.printf("unchanged: %s already lists %s\n", r.File, store)
	}
	if r.Backup != "" {
		out.printf("backup:  %s\n", r.Backup)
	}
	for _, n := range r.Notes {
		out.printf("note:    %s\n", n)
	}
	if !opts.remove && r.DriverMismatch(opts.driver) {
		out.errorf("warning: %s sets driver = %q: Podman with that driver does not see a %s store", r.File, r.Driver, opts.driver)
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
