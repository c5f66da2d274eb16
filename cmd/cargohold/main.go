// Command cargohold builds and publishes read-only Podman additional image stores.
// This package only turns flags into calls and results into text; the work is in builder and layout.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

// Exit codes, documented in the README.
const (
	exitImageFailed = 1 // some image could not be published; the others were
	exitUsage       = 2 // bad flags, recipe or configuration
	exitStore       = 3 // the store could not be opened or locked
)

func main() {
	app := &cli.App{
		Name:  "cargohold",
		Usage: "publish container images into a read-only Podman additional image store",
		Description: "Nodes list and run the published images without pulling, by naming the store in\n" +
			"storage.conf: [storage.options] additionalimagestores = [\"/srv/images\"].",
		Commands:        []*cli.Command{publishCommand(), lsCommand(), inspectCommand(), rmCommand(), gcCommand(), checkCommand(), confCommand()},
		HideHelpCommand: true,
		ExitErrHandler: func(c *cli.Context, err error) {
			if err == nil {
				return
			}
			if coder, ok := err.(cli.ExitCoder); ok {
				if msg := err.Error(); msg != "" {
					fmt.Fprintln(os.Stderr, "cargohold:", msg)
				}
				os.Exit(coder.ExitCode())
			}
			fmt.Fprintln(os.Stderr, "cargohold:", err)
			os.Exit(exitUsage)
		},
	}
	if err := app.Run(os.Args); err != nil {
		app.ExitErrHandler(nil, err)
	}
}
