package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"
)

// output is where a command writes: the app's standard output and error (a test's buffers).
type output struct {
	stdout, stderr io.Writer
}

func outputOf(c *cli.Context) output { return output{stdout: c.App.Writer, stderr: c.App.ErrWriter} }

func (o output) printf(format string, a ...any) { fmt.Fprintf(o.stdout, format, a...) }

func (o output) println(a ...any) { fmt.Fprintln(o.stdout, a...) }

// errorf writes a line to standard error.
func (o output) errorf(format string, a ...any) { fmt.Fprintf(o.stderr, format+"\n", a...) }

func (o output) printJSON(v any) error {
	enc := json.NewEncoder(o.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// plural is "1 layer", "2 layers".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// formatFlags are --format and its older spelling --json, on every command that prints a report
// (fresh values each: a cli.Flag keeps state).
func formatFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "format", Value: "table", Usage: "`table` (lines for people) or json (one report; see README)"},
		&cli.BoolFlag{Name: "json", Usage: "the same as --format json"},
	}
}

// jsonWanted says whether --format (or --json) asks for JSON.
func jsonWanted(c *cli.Context) (bool, error) {
	switch f := c.String("format"); {
	case c.Bool("json") && c.IsSet("format") && f != "json":
		return false, usageErrorf("--json and --format %s contradict each other", f)
	case c.Bool("json"), f == "json":
		return true, nil
	case f == "table":
		return false, nil
	default:
		return false, usageErrorf("--format %q: want table or json", f)
	}
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
