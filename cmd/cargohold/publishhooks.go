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
	if c.IsSet("cvmfs-catalogs") {
		v := c.Bool("cvmfs-catalogs")
		o.CVMFSCatalogs = &v
	}
	return o
}
