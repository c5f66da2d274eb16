package main

import (
	"context"
	"fmt"
	"os"
	"os/user"
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
	o := storageconf.UserOptions{Driver: opts.driver, Backup: opts.backup, MountProgram: opts.mountProgram}
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

// userFile is the file conf user writes and, in o, whose Podman reads it: for --user NAME that
// user's home, ownership and storage; for a user writing their own file, theirs; for a file root
// shares with many users, no one's.
func userFile(opts userOptions, o *storageconf.UserOptions) (string, error) {
	switch {
	case opts.user != "":
		l, err := lookupUser(opts.user)
		if err != nil {
			return "", err
		}
		o.Home, o.Owner, o.User = l.Home, &storageconf.Owner{UID: l.UID, GID: l.GIDs[0]}, &l
		if opts.file == "" {
			return storageconf.UserFile(l.Home), nil
		}
	case opts.file == "" && os.Geteuid() == 0:
		return "", usageErrorf("conf user writes a rootless user's file: give --user NAME, or --file FILE for a file to share; " +
			"root's own Podman reads " + storageconf.SystemFile + " (use conf patch)")
	case os.Geteuid() != 0:
		o.User = &storageconf.Lookup{UID: os.Geteuid()}
		if u, err := user.Current(); err == nil {
			o.User.Name = u.Username
		}
		if opts.file == "" {
			file, err := storageconf.CurrentUserFile()
			if err != nil {
				return "", usageError(err)
			}
			return file, nil
		}
	}
	return opts.file, nil
}

// lookupUser is another user's view of the configuration (root acting for them): home, name, groups.
func lookupUser(name string) (storageconf.Lookup, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return storageconf.Lookup{}, usageError(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	l := storageconf.Lookup{UID: uid, Home: u.HomeDir, Name: u.Username, GIDs: []int{gid}}
	groups, _ := u.GroupIds() // without them only the primary group counts for reading the store
	for _, g := range groups {
		if id, err := strconv.Atoi(g); err == nil && id != gid {
			l.GIDs = append(l.GIDs, id)
		}
	}
	return l, nil
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
	l, version, err := checkLookup(ctx, opts)
	if err != nil {
		return err
	}
	r, err := storageconf.Check(opts.store, opts.driver, l)
	if err != nil {
		return usageError(err)
	}
	mode := "rootful"
	if l.UID != 0 {
		mode = "rootless"
	}
	out := opts.out
	out.printf("podman:  %s, %s\n", version, l.Reader)
	out.printf("user:    %s (%s)\n", strings.TrimSpace(l.Name+" uid "+strconv.Itoa(l.UID)), mode)
	out.printf("read:    %s\n", orNone(strings.Join(r.Files, ", ")))
	out.printf("driver:  %s\n", orNone(r.Driver))
	out.printf("storage: %s (%s)\n", r.GraphRoot, storageState(r.Storage))
	out.printf("stores:  %s\n", orNone(strings.Join(r.Stores, ", ")))
	return printVerdict(out, opts.store, r)
}

// checkLookup is whose view conf check computes, and how (version) their Podman reads storage.conf.
func checkLookup(ctx context.Context, opts checkConfOptions) (storageconf.Lookup, string, error) {
	l := storageconf.Lookup{UID: os.Geteuid(), Reader: storageconf.ReaderFor(opts.version), Root: opts.sysroot}
	if opts.user != "" {
		if os.Geteuid() != 0 {
			return l, "", usageErrorf("conf check --user is for root: run conf check as %s instead", opts.user)
		}
		u, err := lookupUser(opts.user)
		if err != nil {
			return l, "", err
		}
		u.Reader, u.Root = l.Reader, l.Root
		l = u
	}
	if opts.version != "" {
		return l, opts.version, nil
	}
	reader, version, err := storageconf.DetectReader(ctx)
	if err != nil {
		opts.out.errorf("warning: %v; assuming Podman up to 5.x", err)
		version = "unknown"
	}
	l.Reader = reader
	return l, version, nil
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
