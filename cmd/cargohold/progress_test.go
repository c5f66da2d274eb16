package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cargohold/cargohold/internal/testenv"
)

// openPTY opens a pseudo-terminal: what is written to tty is read from master.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = master.Close() })
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	if tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0); err != nil {
		t.Fatal(err)
	}
	// A new terminal is 0 columns wide, where mpb draws nothing.
	if err := unix.IoctlSetWinsize(int(tty.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: 100}); err != nil {
		t.Fatal(err)
	}
	return master, tty
}

// publishOnTerminal publishes hello:1 with standard error on a terminal and TERM=term, and
// returns what the terminal received.
func publishOnTerminal(t *testing.T, term string) string {
	t.Helper()
	t.Setenv("TERM", term)
	master, tty := openPTY(t)
	received := make(chan string)
	go func() {
		var buf bytes.Buffer
		_, _ = io.Copy(&buf, master) // ends with EIO once the terminal side is closed
		received <- buf.String()
	}()
	var stdout bytes.Buffer
	code := run(context.Background(), append([]string{"cargohold"}, publishArgs(filepath.Join(t.TempDir(), "store"))...), &stdout, tty)
	if err := tty.Close(); err != nil {
		t.Fatal(err)
	}
	out := <-received
	if code != 0 {
		t.Fatalf("publish on a terminal (TERM=%s): exit %d\n%s", term, code, out)
	}
	return out
}

// On a terminal the layers' progress bars are drawn; on TERM=dumb (which cannot move the cursor)
// nothing is: no bars, no escape sequence.
func TestNoCursorEscapesOnADumbTerminal(t *testing.T) {
	testenv.RequireRoot(t)
	if out := publishOnTerminal(t, "xterm"); !strings.Contains(out, "Copying blob") {
		t.Fatalf("no progress bars on an xterm (the test's terminal does not work):\n%q", out)
	}
	if out := publishOnTerminal(t, "dumb"); strings.Contains(out, "\x1b") || strings.Contains(out, "Copying blob") {
		t.Errorf("TERM=dumb received bars or escapes:\n%q", out)
	}
}
