package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/cargohold/cargohold/layout/driver"
	"github.com/cargohold/cargohold/storageconf"
	"github.com/urfave/cli/v2"
)

type dropinOptions struct {
	confOptions
	dir, name string
}

func newConfDropinCommand() *cli.Command {
	o := &dropinOptions{}
	return &cli.Command{
		Name:  "dropin",
		Usage: "write a storage.conf.d drop-in that adds the store to the others (Podman 6+)",
		Description: "The list is written with {append = true}, so it extends the stores of storage.conf and of\n" +
			"earlier drop-ins instead of replacing them. Podman up to 5.x ignores drop-ins: use patch or user.\n" +
			"Rootless users only: --dir /etc/containers/storage.rootless.conf.d.",
		Flags: append(confFlags(&o.confOptions, "remove", "backup", "allow-missing-store"),
			&cli.StringFlag{Name: "dir", Value: storageconf.DefaultDropInDir, Usage: "the drop-in `DIR` (created if missing)", Destination: &o.dir},
			&cli.StringFlag{Name: "name", Value: storageconf.DefaultDropInName, Usage: "the drop-in's file `NAME` (*.conf; later names win)", Destination: &o.name},
		),
		Action: func(c *cli.Context) error {
			o.out = outputOf(c)
			return runConfDropin(c.Context, *o)
		},
	}
}

func runConfDropin(ctx context.Context, opts dropinOptions) error {
	if err := opts.prepare(ctx, !opts.remove); err != nil {
		return err
	}
	var r storageconf.Result
	var err error
	if opts.remove {
		r, err = storageconf.RemoveDropIn(opts.dir, opts.name, opts.store, opts.backup)
	} else {
		r, err = storageconf.AddDropIn(opts.dir, opts.name, opts.store, opts.backup)
	}
	if err := printChange(opts.confOptions, r, err); err != nil {
		return err
	}
	if !opts.remove {
		opts.out.errorf("%s", dropinNote(ctx))
	}
	return nil
}

// dropinNote says which Podman reads the drop-in: the installed one's version decides.
func dropinNote(ctx context.Context) string {
	reader, version, err := storageconf.DetectReader(ctx)
	switch {
	case err != nil:
		return "note: drop-ins are read by Podman 6 and later; older Podman needs conf patch or conf user"
	case reader == storageconf.Current:
		return fmt.Sprintf("note: the installed Podman %s reads this drop-in", version)
	}
	return fmt.Sprintf("warning: the installed Podman %s ignores drop-ins (Podman 6+ reads them): "+
		"use conf patch (rootful) or conf user (rootless) for it", version)
}

type userOptions struct {
	confOptions
	user, file   string
	mountProgram *string // nil: as the user's storage was made, else fuse-overlayfs if installed
}

func newConfUserCommand() *cli.Command {
	o := &userOptions{}
	return &cli.Command{
		Name:  "user",
		Usage: "add the store to a rootless user's own storage.conf (created if missing)",
		Description: "Rootless Podman up to 5.x ignores the system file's stores: it reads $CONTAINERS_STORAGE_CONF or\n" +
			"~/.config/containers/storage.conf only. A new file names the driver, the store and (overlay) the\n" +
			"fuse-overlayfs mount program, and leaves graphroot and runroot to the user's defaults.\n" +
			"As root: --user NAME writes that user's file, owned by them. --file FILE writes a file to share\n" +
			"(e.g. exported as CONTAINERS_STORAGE_CONF from /etc/profile.d; see the README).",
		Flags: append(confFlags(&o.confOptions, "driver", "remove", "backup", "allow-missing-store"),
			&cli.StringFlag{Name: "user", Usage: "the user `NAME` whose ~/.config/containers/storage.conf to write (root only)", Destination: &o.user},
			&cli.StringFlag{Name: "file", Usage: "the `FILE` to write (default: the user's; for yourself $CONTAINERS_STORAGE_CONF if set)", Destination: &o.file},
			&cli.StringFlag{Name: "mount-program", Usage: "overlay mount `PROGRAM` for a new file (default: the one the user's storage " +
				"was made with; for new storage fuse-overlayfs if installed; \"\" for none)", Action: setPtr(&o.mountProgram)},
		),
		Action: func(c *cli.Context) error {
			o.out = outputOf(c)
			return runConfUser(c.Context, *o)
		},
	}
}

func runConfUser(ctx context.Context, opts userOptions) error {
	if err := opts.prepare(ctx, !opts.remove); err != nil {
		return err
	}
	file, o, err := storageconf.UserTarget(opts.user, opts.file,
		storageconf.UserOptions{Driver: opts.driver, Backup: opts.backup, MountProgram: opts.mountProgram})
	if err != nil {
		return err
	}
	var r storageconf.Result
	if opts.remove {
		r, err = storageconf.RemoveUserStore(file, opts.store, o)
	} else {
		r, err = storageconf.AddUserStore(file, opts.store, o)
	}
	return printChange(opts.confOptions, r, err)
}

type checkConfOptions struct {
	confOptions
	version, user string
	sysroot       string // for tests: look for /etc and /usr/share files under it
}

func newConfCheckCommand() *cli.Command {
	o := &checkConfOptions{}
	return &cli.Command{
		Name:  "check",
		Usage: "tell whether the current user's (or --user NAME's) Podman will work and see the store, and why not",
		Description: "Reads the storage.conf files as containers/storage does for this user and environment\n" +
			"(CONTAINERS_STORAGE_CONF, the user's file, /etc, /usr/share, drop-ins for Podman 6+) and looks at\n" +
			"the user's own Podman storage, whose recorded driver Podman keeps.\n" +
			"Exit status 0: Podman will see the store; 1: it will not, or will fail; 2: bad flags or unreadable files.",
		Flags: append(confFlags(&o.confOptions, "driver", "allow-missing-store"),
			&cli.StringFlag{Name: "podman-version", Usage: "assume this Podman `VERSION` (default: ask podman --version)", Destination: &o.version},
			&cli.StringFlag{Name: "user", Usage: "check for the user `NAME` (root only; without their environment variables)", Destination: &o.user},
			&cli.StringFlag{Name: "sysroot", Hidden: true, Destination: &o.sysroot}),
		Action: func(c *cli.Context) error {
			o.out = outputOf(c)
			return runConfCheck(c.Context, *o)
		},
	}
}

func runConfCheck(ctx context.Context, opts checkConfOptions) error {
	if err := opts.prepare(ctx, false); err != nil {
		return err
	}
	v, err := storageconf.CheckRequest{User: opts.user, Version: opts.version, Root: opts.sysroot}.Viewer(ctx)
	if err != nil {
		return err
	}
	if v.Warning != nil {
		opts.out.errorf("warning: %v", v.Warning)
	}
	l := v.Lookup
	r, err := storageconf.Check(opts.store, opts.driver, l)
	if err != nil {
		return usageError(err)
	}
	mode := "rootful"
	if l.UID != 0 {
		mode = "rootless"
	}
	out := opts.out
	out.printf("podman:  %s, %s\n", v.Version, l.Reader)
	out.printf("user:    %s (%s)\n", strings.TrimSpace(l.Name+" uid "+strconv.Itoa(l.UID)), mode)
	out.printf("read:    %s\n", orNone(strings.Join(r.Files, ", ")))
	out.printf("driver:  %s\n", orNone(r.Driver))
	out.printf("storage: %s (%s)\n", r.GraphRoot, storageState(r.Storage))
	out.printf("stores:  %s\n", orNone(strings.Join(r.Stores, ", ")))
	return printVerdict(out, opts.store, r)
}

// storageState says what conf check found in the user's own Podman storage.
func storageState(p driver.PodmanStorage) string {
	switch {
	case p.Fresh():
		return "not made yet: Podman's first run records the driver it uses"
	case p.Driver() != "":
		return "made with the " + p.Driver() + " driver, which Podman keeps"
	case len(p.Drivers) > 1:
		return "records of the drivers " + strings.Join(p.Drivers, ", ")
	}
	return "a database without records"
}

// printVerdict prints conf check's notes and result; Podman not seeing the store, or failing, is an
// errNotSeen.
func printVerdict(out output, store string, r *storageconf.Report) error {
	for _, n := range r.Notes {
		out.printf("note:    %s\n", n)
	}
	for _, w := range r.Warnings {
		out.printf("warning: %s\n", w)
	}
	if r.OK() {
		out.printf("result:  Podman will see %s\n", store)
		return nil
	}
	if len(r.Failures) > 0 {
		out.printf("result:  Podman will FAIL: every podman command of this user exits with an error:\n")
		for _, f := range r.Failures {
			out.printf("  - %s\n", f)
		}
	}
	if len(r.Problems) > 0 {
		out.printf("result:  Podman will NOT see %s:\n", store)
		for _, p := range r.Problems {
			out.printf("  - %s\n", p)
		}
	}
	if r.Fix != "" {
		out.printf("fix:     %s\n", r.Fix)
	}
	return reported(errNotSeen)
}
