package main

import (
	"context"

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

// confOptions are what every conf subcommand needs: the store as this node sees it and its driver.
// Its flags are bound to the fields; prepare turns them into store and driver.
type confOptions struct {
	out          output
	store        string        // --store; prepare makes it absolute (symlinks resolved), a platform template expanded for this host
	driverName   string        // --driver
	driver       layout.Driver // prepare: --driver, else the store's own, else overlay
	remove       bool
	backup       bool
	allowMissing bool // --allow-missing-store
}

// confFlags are the flags of the conf subcommands, bound to o: --store, and those of want
// ("driver", "remove", "backup", "allow-missing-store"), in that order.
func confFlags(o *confOptions, want ...string) []cli.Flag {
	flags := []cli.Flag{storeFlag(&o.store, true)}
	all := map[string]cli.Flag{
		"driver": &cli.StringFlag{Name: "driver", Destination: &o.driverName,
			Usage: "the store's storage `DRIVER`: overlay or vfs (default: the store's own; overlay for a store not written yet)"},
		"remove": &cli.BoolFlag{Name: "remove", Destination: &o.remove, Usage: "take the store out instead"},
		"backup": &cli.BoolFlag{Name: "backup", Destination: &o.backup, Usage: "keep the previous content as FILE.bak when the file changes"},
		"allow-missing-store": &cli.BoolFlag{Name: "allow-missing-store", Destination: &o.allowMissing,
			Usage: "register a path that is not a cargohold store here (yet) (every Podman command fails until it is one)"},
	}
	for _, name := range want {
		flags = append(flags, all[name])
	}
	return flags
}

// prepare makes the store one absolute real path (a platform template expanded for this host) and
// has storageconf decide the driver and whether the command may go on (see StoreRequest.Target);
// registers says the command adds the store to a file. Once ctx has ended (a signal), it is ctx's
// cause: the conf commands are quick, and this is where they stop before they read or write anything.
func (o *confOptions) prepare(ctx context.Context, registers bool) error {
	if err := context.Cause(ctx); err != nil {
		return err
	}
	store, err := recipe.StorePath(o.store, "")
	if err == nil {
		store, err = layout.ResolveDir(store) // one spelling of the store: its real path
	}
	if err != nil {
		return usageError(err)
	}
	found, notStore := layout.Identify(store)
	t, err := storageconf.StoreRequest{Store: store, Driver: o.driverName, Found: found, NotStore: notStore,
		Registers: registers, Remove: o.remove, AllowMissing: o.allowMissing}.Target()
	if err != nil {
		return err
	}
	if t.Warning != nil {
		o.out.errorf("warning: %v", t.Warning)
	}
	o.store, o.driver = t.Store, t.Driver
	return nil
}

type snippetOptions struct {
	confOptions
	dropin bool
}

func newConfSnippetCommand() *cli.Command {
	o := &snippetOptions{}
	return &cli.Command{
		Name:  "snippet",
		Usage: "print the storage.conf lines that register the store",
		Flags: append(confFlags(&o.confOptions, "driver", "allow-missing-store"),
			&cli.BoolFlag{Name: "dropin", Destination: &o.dropin, Usage: "print a storage.conf.d drop-in instead (Podman 6+)"}),
		Action: func(c *cli.Context) error {
			o.out = outputOf(c)
			return runConfSnippet(c.Context, *o)
		},
	}
}

func runConfSnippet(ctx context.Context, opts snippetOptions) error {
	if err := opts.prepare(ctx, false); err != nil {
		return err
	}
	var text string
	var err error
	if opts.dropin {
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

type patchOptions struct {
	confOptions
	file, base string
}

func newConfPatchCommand() *cli.Command {
	o := &patchOptions{}
	return &cli.Command{
		Name:  "patch",
		Usage: "add the store to a storage.conf in place (comments and everything else kept byte for byte)",
		Description: "Idempotent: a second run changes nothing. The file is written atomically with its mode and\n" +
			"owner kept. A missing file is created (with its missing parent directories) from the\n" +
			"distribution's default (" + storageconf.DistributionFile + ") or, without one, as a minimal file.",
		Flags: append(confFlags(&o.confOptions, "driver", "remove", "backup", "allow-missing-store"),
			&cli.StringFlag{Name: "file", Value: storageconf.SystemFile, Usage: "the storage.conf `FILE` to edit", Destination: &o.file},
			&cli.StringFlag{Name: "base", Usage: "`FILE` a missing --file starts as (default: the distribution's, if any)", Destination: &o.base},
		),
		Action: func(c *cli.Context) error {
			o.out = outputOf(c)
			return runConfPatch(c.Context, *o)
		},
	}
}

func runConfPatch(ctx context.Context, opts patchOptions) error {
	if err := opts.prepare(ctx, !opts.remove); err != nil {
		return err
	}
	so := storageconf.Options{Driver: opts.driver, Backup: opts.backup, Base: opts.base, MakeDirs: true}
	if opts.remove {
		r, err := storageconf.RemoveStore(opts.file, opts.store, so)
		return printChange(opts.confOptions, r, err)
	}
	r, err := storageconf.AddStore(opts.file, opts.store, so)
	return printChange(opts.confOptions, r, err)
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
