package main

import (
	"github.com/cargohold/cargohold/publish"
	"github.com/urfave/cli/v2"
)

// publishHookFlags are publish's flags for the commands around a publish and for the filesystem the
// store lives on; each overrides the recipe's [publish] key of the same name (o's field stays nil
// when the flag is not given).
func publishHookFlags(o *publish.Overrides) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "before", Action: setPtr(&o.Before),
			Usage: "shell `COMMAND` run before the store is opened; if it fails, nothing is written ({store}, {repo}: see README)"},
		&cli.StringFlag{Name: "after", Action: setPtr(&o.After), Usage: "shell `COMMAND` run once every image is published and the store closed"},
		&cli.StringFlag{Name: "on-failure", Action: setPtr(&o.OnFailure),
			Usage: "shell `COMMAND` run when an image, the store or the after command failed, or a signal stopped the run (not when before failed)"},
		&cli.BoolFlag{Name: "cvmfs", Action: setPtr(&o.CVMFS),
			Usage: "publish through the store's CVMFS repository: cargohold runs cvmfs_server (ingest, transaction, publish, abort) itself; not with before/after/on-failure"},
		&cli.StringFlag{Name: "cvmfs-repo", Action: setPtr(&o.CVMFSRepo),
			Usage: "CVMFS repository `NAME` for --cvmfs and {repo} (default: the directory below /cvmfs/ holding the store)"},
		&cli.BoolFlag{Name: "cvmfs-catalogs", Action: setPtr(&o.CVMFSCatalogs), Usage: "put a .cvmfscatalog into each layer dir: one small CVMFS catalog per layer"},
		&cli.StringFlag{Name: "hardlinks", Action: setPtr(&o.Hardlinks),
			Usage: "`MODE`: keep (default), or copy-across-dirs (a hard link into another directory as a copy; CVMFS needs none: it splits every link itself)"},
		&cli.StringFlag{Name: "driver", Action: setPtr(&o.Driver), Usage: "storage `DRIVER` of a new store: overlay (default) or vfs (whole tree per layer, no whiteouts on disk: " +
			"for vfs nodes); an existing store keeps its own"},
		&cli.StringFlag{Name: "dedup", Action: setPtr(&o.Dedup), Usage: "shared file data `MODE`: auto (default: equal files share extents " +
			"where the filesystem has reflinks), off, or hardlink (equal files and metadata become hard links; see README)"},
	}
}
