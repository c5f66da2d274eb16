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

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
