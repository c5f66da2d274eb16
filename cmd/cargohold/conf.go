package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cargohold/cargohold/layout"
	"github.com/cargohold/cargohold/recipe"
	"github.com/cargohold/cargohold/storageconf"
	"github.com/urfave/cli/v2"
)

// exitNotSeen is `conf check`'s answer "Podman will not see the store".
const exitNotSeen = 1

func confCommand() *cli.Command {
	return &cli.Command{
		Name:  "conf",
		Usage: "register a store with Podman (storage.conf snippets, patches, drop-ins, user files, checks)",
		Description: "A store is used once storage.conf names it in [storage.options] additionalimagestores.\n" +
			"Rootful Podman reads /etc/containers/storage.conf; rootless Podman up to 5.x reads only the\n" +
			"user's own file (conf user); Podman 6+ also reads storage.conf.d drop-ins (conf dropin).",
		Subcommands: []*cli.Command{
			confSnippetCommand(), confPatchCommand(), confDropinCommand(), confUserCommand(), confCheckCommand(),
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

// storeDriver is --driver, or else the driver of the store on this node (overlay if it has none yet).
func storeDriver(c *cli.Context) string {
	if d := c.String("driver"); d != "" {
		return d
	}
	if store, err := nodeStore(c); err == nil {
		if d, err := layout.DetectDriver(os.DirFS(store)); err == nil && d != "" {
			return string(d)
		}
	}
	return string(layout.Overlay)
}
func removeFlag() cli.Flag { return &cli.BoolFlag{Name: "remove", Usage: "take the store out instead"} }
func backupFlag() cli.Flag {
	return &cli.BoolFlag{Name: "backup", Usage: "keep the previous content as FILE.bak when the file changes"}
}
func missingOKFlag() cli.Flag {
	return &cli.BoolFlag{Name: "allow-missing-store", Usage: "register a store that does not exist here yet " +
		"(every Podman command fails until it does)"}
}

func confSnippetCommand() *cli.Command {
	return &cli.Command{
		Name:  "snippet",
		Usage: "print the storage.conf lines that register the store",
		Flags: []cli.Flag{storeFlag(), driverFlag(),
			&cli.BoolFlag{Name: "dropin", Usage: "print a storage.conf.d drop-in instead (Podman 6+)"}},
		Action: func(c *cli.Context) error {
			store, err := storeArg(c)
			if err != nil {
				return cli.Exit(err, exitUsage)
			}
			var text string
			if c.Bool("dropin") {
				text, err = storageconf.DropInSnippet(store)
			} else {
				text, err = storageconf.Snippet(store, storeDriver(c))
			}
			if err != nil {
				return cli.Exit(err, exitUsage)
			}
			fmt.Print(text)
			return nil
		},
	}
}

func confPatchCommand() *cli.Command {
	return &cli.Command{
		Name:  "patch",
		Usage: "add the store to a storage.conf in place (comments and everything else kept byte for byte)",
		Description: "Idempotent: a second run changes nothing. The file is written atomically with its mode and\n" +
			"owner kept. A missing file is created from the distribution's default\n" +
			"(" + storageconf.DistributionFile + ") or, without one, as a minimal file.",
		Flags: []cli.Flag{storeFlag(), driverFlag(), removeFlag(), backupFlag(), missingOKFlag(),
			&cli.StringFlag{Name: "file", Value: storageconf.SystemFile, Usage: "the storage.conf `FILE` to edit"},
			&cli.StringFlag{Name: "base", Usage: "`FILE` a missing --file starts as (default: the distribution's, if any)"},
		},
		Action: func(c *cli.Context) error {
			store, err := storeArg(c)
			if err != nil {
				return cli.Exit(err, exitUsage)
			}
			file := c.String("file")
			opts := storageconf.Options{Driver: storeDriver(c), Backup: c.Bool("backup"), Base: c.String("base")}
			if c.Bool("remove") {
				r, err := storageconf.RemoveStore(file, store, opts)
				return report(c, r, err)
			}
			r, err := storageconf.AddStore(file, store, opts)
			return report(c, r, err)
		},
	}
}

func confDropinCommand() *cli.Command {
	return &cli.Command{
		Name:  "dropin",
		Usage: "write a storage.conf.d drop-in that adds the store to the others (Podman 6+)",
		Description: "The list is written with {append = true}, so it extends the stores of storage.conf and of\n" +
			"earlier drop-ins instead of replacing them. Podman up to 5.x ignores drop-ins: use patch or user.\n" +
			"Rootless users only: --dir /etc/containers/storage.rootless.conf.d.",
		Flags: []cli.Flag{storeFlag(), removeFlag(), backupFlag(), missingOKFlag(),
			&cli.StringFlag{Name: "dir", Value: storageconf.DefaultDropInDir, Usage: "the drop-in `DIR` (created if missing)"},
			&cli.StringFlag{Name: "name", Value: storageconf.DefaultDropInName, Usage: "the drop-in's file `NAME` (*.conf; later names win)"},
		},
		Action: func(c *cli.Context) error {
			store, err := storeArg(c)
			if err != nil {
				return cli.Exit(err, exitUsage)
			}
			if c.Bool("remove") {
				r, err := storageconf.RemoveDropIn(c.String("dir"), c.String("name"), store, c.Bool("backup"))
				return report(c, r, err)
			}
			r, err := storageconf.AddDropIn(c.String("dir"), c.String("name"), store, c.Bool("backup"))
			return report(c, r, err)
		},
	}
}

func confUserCommand() *cli.Command {
	return &cli.Command{
		Name:  "user",
		Usage: "add the store to a rootless user's own storage.conf (created if missing)",
		Description: "Rootless Podman up to 5.x ignores the system file's stores: it reads $CONTAINERS_STORAGE_CONF or\n" +
			"~/.config/containers/storage.conf only. A new file names the driver, the store and (overlay) the\n" +
			"fuse-overlayfs mount program, and leaves graphroot and runroot to the user's defaults.\n" +
			"As root: --user NAME writes that user's file, owned by them. --file FILE writes a file to share\n" +
			"(e.g. exported as CONTAINERS_STORAGE_CONF from /etc/profile.d; see the README).",
		Flags: []cli.Flag{storeFlag(), driverFlag(), removeFlag(), backupFlag(), missingOKFlag(),
			&cli.StringFlag{Name: "user", Usage: "the user `NAME` whose ~/.config/containers/storage.conf to write (root only)"},
			&cli.StringFlag{Name: "file", Usage: "the `FILE` to write (default: the user's; for yourself $CONTAINERS_STORAGE_CONF if set)"},
			&cli.StringFlag{Name: "mount-program", Usage: "overlay mount `PROGRAM` for a new file (default: fuse-overlayfs if installed; \"\" for none)"},
		},
		Action: runConfUser,
	}
}

func runConfUser(c *cli.Context) error {
	store, err := storeArg(c)
	if err != nil {
		return cli.Exit(err, exitUsage)
	}
	o := storageconf.UserOptions{Driver: storeDriver(c), Backup: c.Bool("backup")}
	if c.IsSet("mount-program") {
		o.MountProgram = c.String("mount-program")
	} else if p, err := exec.LookPath("fuse-overlayfs"); err == nil {
		o.MountProgram = p
	}
	file := c.String("file")
	switch {
	case c.String("user") != "":
		u, err := user.Lookup(c.String("user"))
		if err != nil {
			return cli.Exit(err, exitUsage)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		o.Home, o.Owner = u.HomeDir, &storageconf.Owner{UID: uid, GID: gid}
		if file == "" {
			file = storageconf.UserFile(u.HomeDir)
		}
	case file == "" && os.Geteuid() == 0:
		return cli.Exit("conf user writes a rootless user's file: give --user NAME, or --file FILE for a file to share; "+
			"root's own Podman reads "+storageconf.SystemFile+" (use conf patch)", exitUsage)
	case file == "":
		if file, err = storageconf.CurrentUserFile(); err != nil {
			return cli.Exit(err, exitUsage)
		}
	}
	if c.Bool("remove") {
		r, err := storageconf.RemoveUserStore(file, store, o)
		return report(c, r, err)
	}
	r, err := storageconf.AddUserStore(file, store, o)
	return report(c, r, err)
}

func confCheckCommand() *cli.Command {
	return &cli.Command{
		Name:  "check",
		Usage: "tell whether the current user's Podman will see the store, and why not",
		Description: "Reads the storage.conf files as containers/storage does for this user and environment\n" +
			"(CONTAINERS_STORAGE_CONF, the user's file, /etc, /usr/share, drop-ins for Podman 6+).\n" +
			"Exit status 0: Podman will see the store; 1: it will not; 2: bad flags or unreadable files.",
		Flags: []cli.Flag{storeFlag(), driverFlag(),
			&cli.StringFlag{Name: "podman-version", Usage: "assume this Podman `VERSION` (default: ask podman --version)"},
			// For tests: look for /etc and /usr/share files under DIR.
			&cli.StringFlag{Name: "sysroot", Hidden: true}},
		Action: runConfCheck,
	}
}

func runConfCheck(c *cli.Context) error {
	store, err := storeArg(c)
	if err != nil {
		return cli.Exit(err, exitUsage)
	}
	version := c.String("podman-version")
	reader := storageconf.ReaderFor(version)
	if version == "" {
		if reader, version, err = storageconf.DetectReader(); err != nil {
			fmt.Fprintf(os.Stderr, "warning: %v; assuming Podman up to 5.x\n", err)
			version = "unknown"
		}
	}
	uid := os.Geteuid()
	r, err := storageconf.Check(store, storeDriver(c), storageconf.Lookup{UID: uid, Reader: reader, Root: c.String("sysroot")})
	if err != nil {
		return cli.Exit(err, exitUsage)
	}
	mode := "rootful"
	if uid != 0 {
		mode = "rootless"
	}
	fmt.Printf("podman:  %s, %s\n", version, reader)
	fmt.Printf("user:    uid %d (%s)\n", uid, mode)
	fmt.Printf("read:    %s\n", orNone(strings.Join(r.Files, ", ")))
	fmt.Printf("driver:  %s\n", orNone(r.Driver))
	fmt.Printf("stores:  %s\n", orNone(strings.Join(r.Stores, ", ")))
	for _, n := range r.Notes {
		fmt.Printf("note:    %s\n", n)
	}
	for _, w := range r.Warnings {
		fmt.Printf("warning: %s\n", w)
	}
	if r.OK() {
		fmt.Printf("result:  Podman will see %s\n", store)
		return nil
	}
	fmt.Printf("result:  Podman will NOT see %s:\n", store)
	for _, p := range r.Problems {
		fmt.Printf("  - %s\n", p)
	}
	if r.Fix != "" {
		fmt.Printf("fix:     %s\n", r.Fix)
	}
	return cli.Exit("", exitNotSeen)
}

// storeArg returns --store as an absolute path, a template ("/srv/images/{arch}") expanded for this
// node's platform; registering also wants it to exist, since Podman fails altogether while a listed
// store is missing.
func storeArg(c *cli.Context) (string, error) {
	store, err := nodeStore(c)
	if err != nil {
		return "", err
	}
	if err := storageconf.CheckStorePath(store); err != nil {
		return "", err
	}
	if err := storageconf.CheckDriver(storeDriver(c)); err != nil {
		return "", err
	}
	registering := c.Command.Name != "snippet" && c.Command.Name != "check" && !c.Bool("remove")
	if registering && !c.Bool("allow-missing-store") {
		if err := storageconf.CheckStoreDir(store); err != nil {
			return "", fmt.Errorf("%w; give --allow-missing-store to register it anyway", err)
		}
	}
	return store, nil
}

// nodeStore is --store for this node: absolute, with a platform template expanded for this host.
func nodeStore(c *cli.Context) (string, error) {
	store, err := recipe.StorePath(c.String("store"), "")
	if err != nil {
		return "", err
	}
	return filepath.Abs(store)
}

// report prints what a change did, one line (plus warnings), or fails.
func report(c *cli.Context, r storageconf.Result, err error) error {
	if err != nil {
		return cli.Exit(err, exitUsage)
	}
	store, _ := nodeStore(c)
	switch {
	case c.Bool("remove") && r.Changed:
		fmt.Printf("removed %s from %s\n", store, r.File)
	case c.Bool("remove"):
		fmt.Printf("unchanged: %s does not list %s\n", r.File, store)
	case r.Created && r.Base != "":
		fmt.Printf("created %s from %s, listing %s\n", r.File, r.Base, store)
	case r.Created:
		fmt.Printf("created %s listing %s\n", r.File, store)
	case r.Changed:
		fmt.Printf("added %s to %s\n", store, r.File)
	default:
		fmt.Printf("unchanged: %s already lists %s\n", r.File, store)
	}
	if r.Backup != "" {
		fmt.Printf("backup:  %s\n", r.Backup)
	}
	if driver := storeDriver(c); !c.Bool("remove") && r.DriverMismatch(driver) {
		fmt.Fprintf(os.Stderr, "warning: %s sets driver = %q: Podman with that driver does not see a %s store\n",
			r.File, r.Driver, driver)
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
