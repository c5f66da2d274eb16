package main

import (
	"context"
	"fmt"
	"os"

	"github.com/cargohold/cargohold/cvmfs"
	"github.com/cargohold/cargohold/layout"
	"github.com/cargohold/cargohold/publish"
	"github.com/urfave/cli/v2"
)

// publishHookFlags are publish's flags for the commands around a publish and for the filesystem the
// store lives on; each overrides the recipe's [publish] key of the same name.
func publishHookFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "before", Usage: "shell `COMMAND` run before the store is opened; if it fails, nothing is written ({store}, {repo}: see README)"},
		&cli.StringFlag{Name: "after", Usage: "shell `COMMAND` run once every image is published and the store closed"},
		&cli.StringFlag{Name: "on-failure", Usage: "shell `COMMAND` run when an image, the store or the after command failed, or a signal stopped the run (not when before failed)"},
		&cli.BoolFlag{Name: "cvmfs", Usage: "publish through the store's CVMFS repository: cargohold runs cvmfs_server (ingest, transaction, publish, abort) itself; not with before/after/on-failure"},
		&cli.StringFlag{Name: "cvmfs-repo", Usage: "CVMFS repository `NAME` for --cvmfs and {repo} (default: the directory below /cvmfs/ holding the store)"},
		&cli.BoolFlag{Name: "cvmfs-catalogs", Usage: "put a .cvmfscatalog into each layer dir: one small CVMFS catalog per layer"},
		&cli.StringFlag{Name: "hardlinks", Usage: "`MODE`: keep (default), or copy-across-dirs (CVMFS keeps hard links only within one directory)"},
		&cli.StringFlag{Name: "driver", Usage: "storage `DRIVER` of a new store: overlay (default) or vfs (whole tree per layer, no whiteouts on disk: " +
			"for vfs nodes and CVMFS); an existing store keeps its own"},
	}
}

// hookOverrides are the [publish] keys given as flags.
func hookOverrides(c *cli.Context) publish.Overrides {
	str := func(name string) *string {
		if !c.IsSet(name) {
			return nil
		}
		v := c.String(name)
		return &v
	}
	o := publish.Overrides{Before: str("before"), After: str("after"), OnFailure: str("on-failure"),
		CVMFSRepo: str("cvmfs-repo"), Hardlinks: str("hardlinks"), Driver: str("driver")}
	boolean := func(name string) *bool {
		if !c.IsSet(name) {
			return nil
		}
		v := c.Bool(name)
		return &v
	}
	o.CVMFS, o.CVMFSCatalogs = boolean("cvmfs"), boolean("cvmfs-catalogs")
	return o
}

// beginStore runs what comes before the store is opened and returns where to open it and how: the
// before hook, or with [publish] cvmfs the CVMFS publication's Begin (a shadow of the store, or a
// transaction). If it fails, nothing was written and finishStore must not run.
func beginStore(opts publishOptions, s publish.Store) (string, layout.Options, error) {
	storeOpts := withLock(opts.out, opts.noWait, s.Dir, s.Options)
	if s.CVMFS == nil {
		if err := s.Hooks.RunBefore(); err != nil {
			return "", storeOpts, fmt.Errorf("%w; nothing was published", err)
		}
		return s.Dir, storeOpts, nil
	}
	s.CVMFS.Server = cvmfs.Server{Command: os.Getenv("CVMFS_SERVER"), Stdout: s.Hooks.Stdout, Stderr: s.Hooks.Stderr}
	s.CVMFS.Stdout = s.Hooks.Stdout
	dir, err := s.CVMFS.Begin()
	if err != nil {
		return "", storeOpts, &kindError{errRepository, fmt.Errorf("%w; nothing was published", err)}
	}
	storeOpts.ServedAt = s.Dir
	return dir, storeOpts, nil
}

// finishStore runs what comes after the store is closed: the after or on-failure hook, or the CVMFS
// publication's Finish.
func finishStore(ctx context.Context, out output, s publish.Store, err error) error {
	if s.CVMFS == nil {
		return finishHooks(out, s, err)
	}
	ferr := s.CVMFS.Finish(ctx, err != nil)
	if ferr != nil {
		ferr = &kindError{errRepository, ferr}
	}
	return combineFinish(out, err, ferr)
}

// finishHooks runs the after hook if err (what the publish returned) is nil, else the on-failure
// hook; the store must be closed by then. A failing hook makes a successful publish exit 4; a
// failed publish keeps its own exit status, and the hook's error is printed beside it.
func finishHooks(out output, s publish.Store, err error) error {
	return combineFinish(out, err, s.Hooks.Finish(err != nil))
}

// combineFinish is the error of a store whose publish ended with err and whose finishing step (hooks,
// CVMFS) with ferr: a failed publish keeps its own, and ferr is printed beside it.
func combineFinish(out output, err, ferr error) error {
	switch {
	case ferr == nil:
		return err
	case err != nil:
		out.errorf("error: %v", ferr)
		return err
	}
	return ferr
}
