// Command cargohold builds and publishes read-only Podman additional image stores.
// This package only turns flags into calls and results into text; the work is in publish, builder
// and layout. Each command is newXCommand (its flags), an options struct, and runX(ctx, opts).
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"
)

func main() {
	os.Exit(run(context.Background(), os.Args, os.Stdout, os.Stderr))
}

// run runs the command line args and returns its exit status; tests call it in-process. A signal
// cancels the command's context (see interruptible): every runX stops on it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	routeLibraryLogs(stderr)
	ran := markRun(app.Commands)
	ctx, stop := interruptible(ctx)
	defer stop()
	args, err := reorderArgs(app, helpArgs(app, args))
	if err == nil {
		err = app.RunContext(ctx, args)
	}
	if err != nil && !*ran {
		err = usageError(err) // urfave/cli's own, before any command ran: what the user typed
	}
	if msg := errorText(err); msg != "" {
		fmt.Fprintln(stderr, "cargohold:", msg)
	}
	return exitCode(err)
}

func newApp(stdout, stderr io.Writer) *cli.App {
	cli.VersionPrinter = printVersion
	return &cli.App{
		Name:  "cargohold",
		Usage: "publish container images into a read-only Podman additional image store",
		Description: "Nodes list and run the published images without pulling, by naming the store in\n" +
			"storage.conf: [storage.options] additionalimagestores = [\"/srv/images\"].",
		Version: version(),
		Commands: []*cli.Command{newPublishCommand(), newLsCommand(), newInspectCommand(), newRmCommand(),
			newGcCommand(), newCheckCommand(), newConfCommand()},
		Writer:    stdout,
		ErrWriter: stderr,
		// Without it, urfave/cli answers an unknown command with its help and exit status 3. Without
		// a command nothing was done: the help goes to standard error and the status is 2.
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usageErrorf("unknown command %q (see cargohold help)", c.Args().First())
			}
			cli.HelpPrinter(c.App.ErrWriter, cli.AppHelpTemplate, c.App)
			return reported(errUsage)
		},
		// urfave/cli would print the error and exit by itself; run does both, from one place.
		ExitErrHandler: func(*cli.Context, error) {},
	}
}

// markRun wraps the action of every command so that the flag it returns says whether one started.
// An error from before that is urfave/cli's own (an unknown flag, a bad flag value, a missing
// required flag, an unknown help topic): what the user typed, exit 2. It carries no kind of ours,
// and an error of no kind is otherwise a failure (exit 1).
func markRun(commands []*cli.Command) *bool {
	ran := new(bool)
	var mark func([]*cli.Command)
	mark = func(commands []*cli.Command) {
		for _, c := range commands {
			if action := c.Action; action != nil {
				c.Action = func(ctx *cli.Context) error {
					*ran = true
					return action(ctx)
				}
			}
			mark(c.Subcommands)
		}
	}
	mark(commands)
	return ran
}

// libraryLogs is where the image library's log lines go (see routeLibraryLogs).
var libraryLogs = &heldLog{}

// routeLibraryLogs sends containers/image's own log lines (a blob read that reconnects) to
// cargohold's standard error as "warning: ..." lines instead of logrus's raw "time=… level=…".
func routeLibraryLogs(stderr io.Writer) {
	libraryLogs.reset(stderr)
	logrus.SetOutput(libraryLogs)
	logrus.SetLevel(logrus.InfoLevel)
	logrus.SetFormatter(libraryLogFormat{})
}

type libraryLogFormat struct{}

func (libraryLogFormat) Format(e *logrus.Entry) ([]byte, error) {
	level := "note"
	if e.Level <= logrus.WarnLevel {
		level = "warning"
	}
	return []byte(level + ": " + e.Message + "\n"), nil
}
