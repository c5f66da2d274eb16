package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sync"

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

// heldLog passes what is written to out, or, while held, keeps it until release prints or drops
// it. Writes may come from several goroutines (the layers of an image are fetched at once).
type heldLog struct {
	mu   sync.Mutex
	out  io.Writer
	held *bytes.Buffer
}

func (l *heldLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held != nil {
		return l.held.Write(p)
	}
	return l.out.Write(p)
}

// reset makes out the destination, holding nothing.
func (l *heldLog) reset(out io.Writer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.out, l.held = out, nil
}

func (l *heldLog) hold() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.held = &bytes.Buffer{}
}

// release ends holding; show prints what was held.
func (l *heldLog) release(show bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if show && l.held != nil {
		_, _ = l.out.Write(l.held.Bytes()) // standard error: nowhere to report a failure
	}
	l.held = nil
}

// plural is "1 layer", "2 layers".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
