package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/cargohold/cargohold/hooks"
	"github.com/cargohold/cargohold/layout"
	"github.com/cargohold/cargohold/recipe"
	"github.com/urfave/cli/v2"
)

// exitHook: the before or after hook failed (documented in the README with the other exit codes).
const exitHook = 4

// publishHookFlags are publish's flags for the commands around a publish and for the filesystem the
// store lives on; each overrides the recipe's [publish] key of the same name.
func publishHookFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "before", Usage: "shell `COMMAND` run before the store is opened; if it fails, nothing is written ({store}, {repo}: see README)"},
		&cli.StringFlag{Name: "after", Usage: "shell `COMMAND` run once every image is published and the store closed"},
		&cli.StringFlag{Name: "on-failure", Usage: "shell `COMMAND` run when an image, the store or the after command failed (not when before failed)"},
		&cli.StringFlag{Name: "cvmfs-repo", Usage: "CVMFS repository `NAME` for {repo} (default: the directory below /cvmfs/ holding the store)"},
		&cli.BoolFlag{Name: "cvmfs-catalogs", Usage: "put a .cvmfscatalog into each layer dir: one small CVMFS catalog per layer"},
		&cli.StringFlag{Name: "hardlinks", Usage: "`MODE`: keep (default), or copy-across-dirs (CVMFS keeps hard links only within one directory)"},
		&cli.StringFlag{Name: "driver", Usage: "storage `DRIVER` of a new store: overlay (default) or vfs (whole tree per layer, no whiteouts on disk: " +
			"for vfs nodes and CVMFS); an existing store keeps its own"},
	}
}

// publishRun is what surrounds the images of one publish: the hooks and the store options.
type publishRun struct {
	hooks     hooks.Set
	storeOpts layout.Options
	copyLinks bool // builder.Publisher.CopyHardlinksAcrossDirs
	stop      context.CancelFunc
}

// startPublish takes the recipe's [publish] settings (zero without a recipe), lets the flags override
// them, checks them, and runs the before hook. An error is a cli.Exit: bad settings exit 2 before
// anything ran; a failed before hook exits 4 and nothing else runs. Unless it returns an error, the
// caller must call finish.
func startPublish(c *cli.Context, storeDir string, settings recipe.Publish) (*publishRun, error) {
	for flag, key := range map[string]*string{"before": &settings.Before, "after": &settings.After,
		"on-failure": &settings.OnFailure, "cvmfs-repo": &settings.CVMFSRepo, "hardlinks": &settings.Hardlinks,
		"driver": &settings.Driver} {
		if c.IsSet(flag) {
			*key = c.String(flag)
		}
	}
	if c.IsSet("cvmfs-catalogs") {
		settings.CVMFSCatalogs = c.Bool("cvmfs-catalogs")
	}
	copyLinks, err := recipe.CopyHardlinksAcrossDirs(settings.Hardlinks)
	if err != nil {
		return nil, cli.Exit(err, exitUsage)
	}
	var driver layout.Driver // "": the store's own, overlay for a new one
	if settings.Driver != "" {
		if driver, err = layout.ParseDriver(settings.Driver); err != nil {
			return nil, cli.Exit(err, exitUsage)
		}
	}
	abs, err := filepath.Abs(storeDir)
	if err != nil {
		return nil, cli.Exit(err, exitUsage)
	}
	repo, inRepo := settings.CVMFSRepo, hooks.RepoFromStore(abs)
	switch {
	case repo == "":
		repo = inRepo
	case inRepo != "" && inRepo != repo:
		// The transaction would open one repository while the store is written in another.
		return nil, cli.Exit(fmt.Errorf("the store %s is in CVMFS repository %s, not in %s (cvmfs-repo)", abs, inRepo, repo), exitUsage)
	}
	run := &publishRun{
		hooks: hooks.Set{
			Before: settings.Before, After: settings.After, OnFailure: settings.OnFailure,
			Values: hooks.Values{Store: abs, Repo: repo},
		},
		storeOpts: layout.Options{CatalogMarkers: settings.CVMFSCatalogs, Driver: driver, Create: true},
		copyLinks: copyLinks,
		stop:      func() {},
	}
	if c.Bool("json") {
		run.hooks.Stdout = os.Stderr // stdout carries the JSON report only
	}
	if err := run.hooks.Validate(); err != nil {
		return nil, cli.Exit(err, exitUsage)
	}
	if run.hooks.Empty() {
		return run, nil
	}
	// From here on, SIGTERM (systemd stopping the unit, a CI job cancelled) or Ctrl-C makes the
	// remaining images fail quickly instead of killing the process, so that on-failure still runs
	// (for CVMFS: the transaction is aborted, not left open). Installed before the before hook:
	// a signal while it opens the transaction must not leave it open either.
	c.Context, run.stop = signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	if err := run.hooks.RunBefore(); err != nil {
		run.stop()
		return nil, cli.Exit(fmt.Errorf("%w; nothing was published", err), exitHook)
	}
	return run, nil
}

// finish runs the after hook if err (what the publish returned) is nil, else the on-failure hook;
// the store must be closed by then. A failing hook makes a successful publish exit 4; a failed
// publish keeps its own exit status, and the hook's error is printed beside it.
func (r *publishRun) finish(err error) error {
	defer r.stop()
	herr := r.hooks.Finish(err != nil)
	switch {
	case herr == nil:
		return err
	case err != nil:
		fmt.Fprintln(os.Stderr, "error:", herr)
		return err
	}
	return cli.Exit(herr, exitHook)
}
