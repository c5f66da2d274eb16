package main

import (
	"fmt"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// buildVersion may be set at build time: -ldflags "-X main.buildVersion=1.2.3".
var buildVersion = ""

// printVersion is --version: cargohold's version and those of the image and storage libraries it
// was built with, as the Go toolchain recorded them.
func printVersion(c *cli.Context) {
	fmt.Fprintln(c.App.Writer, "cargohold version "+version())
}

func version() string {
	v, image, storage := buildVersion, "unknown", "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = info.Main.Version
		}
		for _, d := range info.Deps {
			switch d.Path {
			case "go.podman.io/image/v5":
				image = d.Version
			case "go.podman.io/storage":
				storage = d.Version
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	return fmt.Sprintf("%s\nimage library:   go.podman.io/image/v5 %s\nstorage library: go.podman.io/storage %s", v, image, storage)
}
