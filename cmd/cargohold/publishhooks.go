package main

import (
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
		&cli.StringFlag{Name: "cvmfs-repo", Usage: "CVMFS repository `NAME` for {repo} (default: the directory below /cvmfs/ holding the store)"},
		&cli.BoolFlag{Name: "cvmfs-catalogs", Usage: "put a .cvmfscatalog into each layer dir: one small CVMFS catalog per layer"},
		&cli.StringFlag{Name: "hardlinks", Usage: "`MODE`: keep (default), or copy-across-dirs (CVMFS keeps hard links only within one directory)"},
		&cli.StringFlag{Name: "driver", Usage: "storage `DRIVER` of a new store: overlay (default) or vfs (whole tree per layer, no whiteouts on disk: " +
			"for vfs nodes and CVMFS); an existing store keeps its own"},
		&cli.StringFlag{Name: "dedup", Usage: "shared file data `MODE`: auto (default: equal files share extents where the filesystem has reflinks), " +
			"off, or hardlink (equal files and metadata become hard links; see README)"},
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
		CVMFSRepo: str("cvmfs-repo"), Hardlinks: str("hardlinks"), Driver: str("driver"), Dedup: str("dedup")}
	if c.IsSet("cvmfs-catalogs") {
		v := c.Bool("cvmfs-catalogs")
		o.CVMFSCatalogs = &v
	}
	return o
}

// finishHooks runs the after hook if err (what the publish returned) is nil, else the on-failure
// hook; the store must be closed by then. A failing hook makes a successful publish exit 4; a
// failed publish keeps its own exit status, and the hook's error is printed beside it.
func finishHooks(out output, s publish.Store, err error) error {
	herr := s.Hooks.Finish(err != nil)
	switch {
	case herr == nil:
		return err
	case err != nil:
		out.errorf("error: %v", herr)
		return err
	}
	return herr
}
