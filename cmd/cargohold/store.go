package main

import (
	"github.com/cargohold/cargohold/recipe"
	"github.com/urfave/cli/v2"
)

// platformFlag is --platform of the commands that only name a store (ls, inspect, rm, gc, check):
// the platform --store's placeholders stand for, as publish and conf expand them.
func platformFlag() cli.Flag {
	return &cli.StringFlag{Name: "platform", Usage: "`OS/ARCH[/VARIANT]` that {os}, {arch}, {variant} and {platform} " +
		"in --store stand for (default: this host's)"}
}

// storeOf is --store with its platform placeholders expanded ("/srv/images/{arch}" is
// /srv/images/amd64 on this host, or the store of --platform).
func storeOf(c *cli.Context) (string, error) {
	dir, err := recipe.StorePath(c.String("store"), c.String("platform"))
	if err != nil {
		return "", usageError(err)
	}
	return dir, nil
}
