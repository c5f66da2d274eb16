package main

import (
	"fmt"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// buildVersion is set at build time, as the README's install command does:
// -ldflags "-X main.buildVersion=$(git describe --tags --always --dirty)". It names the build even
// where the Go toolchain records no version control information (-buildvcs=false, a git worktree).
var buildVersion = ""

// printVersion is --version: cargohold's version and those of the image and storage libraries it
// was built with, as the Go toolchain recorded them.
func printVersion(c *cli.Context) {
	fmt.Fprintln(c.App.Writer, "cargohold version "+version())
}

func version() string {
	image, storage := "unknown", "unknown"
	info, ok := debug.ReadBuildInfo()
	if ok {
		for _, d := range info.Deps {
			switch d.Path {
			case "go.podman.io/image/v5":
				image = d.Version
			case "go.podman.io/storage":
				storage = d.Version
			}
		}
	}
	return fmt.Sprintf("%s\nimage library:   go.podman.io/image/v5 %s\nstorage library: go.podman.io/storage %s",
		ownVersion(buildVersion, info), image, storage)
}

// ownVersion is cargohold's version: the stamped one, else the module version the toolchain
// derived from a tag or commit, else the commit it recorded; never Go's "(devel)", which says
// nothing about what was built.
func ownVersion(stamped string, info *debug.BuildInfo) string {
	if stamped != "" {
		return stamped
	}
	if info == nil {
		return unknownVersion
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var revision, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if revision == "" {
		return unknownVersion
	}
	if len(revision) > 12 {
		revision = revision[:12]
	}
	if modified == "true" {
		revision += "-dirty"
	}
	return revision
}

const unknownVersion = "unknown (built without version information: build with the README's install command, " +
	"which stamps git describe's answer)"
