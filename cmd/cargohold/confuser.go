package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"

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
	mountProgram *string // nil: fuse-overlayfs if installed
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
			&cli.StringFlag{Name: "mount-program", Usage: "overlay mount `PROGRAM` for a new file (default: fuse-overlayfs if installed; \"\" for none)",
				Action: setPtr(&o.mountProgram)},
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
	o := storageconf.UserOptions{Driver: opts.driver, Backup: opts.backup}
	if opts.mountProgram != nil {
		o.MountProgram = *opts.mountProgram
	} else if p, err := exec.LookPath("fuse-overlayfs"); err == nil {
		o.MountProgram = p
	}
	file, err := userFile(opts, &o)
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

// userFile is the file conf user writes, and for --user NAME that user's home and ownership in o.
func userFile(opts userOptions, o *storageconf.UserOptions) (string, error) {
	switch {
	case opts.user != "":
		u, err := user.Lookup(opts.user)
		if err != nil {
			return "", usageError(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		o.Home, o.Owner = u.HomeDir, &storageconf.Owner{UID: uid, GID: gid}
		if opts.file == "" {
			return storageconf.UserFile(u.HomeDir), nil
		}
	case opts.file == "" && os.Geteuid() == 0:
		return "", usageErrorf("conf user writes a rootless user's file: give --user NAME, or --file FILE for a file to share; " +
			"root's own Podman reads " + storageconf.SystemFile + " (use conf patch)")
	case opts.file == "":
		file, err := storageconf.CurrentUserFile()
		if err != nil {
			return "", usageError(err)
		}
		return file, nil
	}
	return opts.file, nil
}

type confCheckOptions struct {
	confOptions
	podmanVersion string
	sysroot       string // for tests: look for /etc and /usr/share files under it
}

func newConfCheckCommand() *cli.Command {
	o := &confCheckOptions{}
	return &cli.Command{
		Name:  "check",
		Usage: "tell whether the current user's Podman will see the store, and why not",
		Description: "Reads the storage.conf files as containers/storage does for this user and environment\n" +
			"(CONTAINERS_STORAGE_CONF, the user's file, /etc, /usr/share, drop-ins for Podman 6+).\n" +
			"Exit status 0: Podman will see the store; 1: it will not; 2: bad flags or unreadable files.",
		Flags: append(confFlags(&o.confOptions, "driver", "allow-missing-store"),
			&cli.StringFlag{Name: "podman-version", Usage: "assume this Podman `VERSION` (default: ask podman --version)", Destination: &o.podmanVersion},
			&cli.StringFlag{Name: "sysroot", Hidden: true, Destination: &o.sysroot}),
		Action: func(c *cli.Context) error {
			o.out = outputOf(c)
			return runConfCheck(c.Context, *o)
		},
	}
}

func runConfCheck(ctx context.Context, opts confCheckOptions) error {
	if err := opts.prepare(ctx, false); err != nil {
		return err
	}
	version, sysroot := opts.podmanVersion, opts.sysroot
	reader := storageconf.ReaderFor(version)
	if version == "" {
		var err error
		if reader, version, err = storageconf.DetectReader(ctx); err != nil {
			opts.out.errorf("warning: %v; assuming Podman up to 5.x", err)
			version = "unknown"
		}
	}
	uid := os.Geteuid()
	r, err := storageconf.Check(opts.store, opts.driver, storageconf.Lookup{UID: uid, Reader: reader, Root: sysroot})
	if err != nil {
		return usageError(err)
	}
	mode := "rootful"
	if uid != 0 {
		mode = "rootless"
	}
	out := opts.out
	out.printf("podman:  %s, %s\n", version, reader)
	out.printf("user:    uid %d (%s)\n", uid, mode)
	out.printf("read:    %s\n", orNone(strings.Join(r.Files, ", ")))
	out.printf("driver:  %s\n", orNone(r.Driver))
	out.printf("stores:  %s\n", orNone(strings.Join(r.Stores, ", ")))
	return printVerdict(out, opts.store, r)
}

// printVerdict prints conf check's notes and result; Podman not seeing the store is an errNotSeen.
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
	out.printf("result:  Podman will NOT see %s:\n", store)
	for _, p := range r.Problems {
		out.printf("  - %s\n", p)
	}
	if r.Fix != "" {
		out.printf("fix:     %s\n", r.Fix)
	}
	return reported(errNotSeen)
}
