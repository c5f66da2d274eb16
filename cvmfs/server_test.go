package cvmfs

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A Ctrl-C goes to the terminal's foreground process group: cvmfs_server must not be in cargohold's,
// or it would be killed half way through an ingest or a publish.
func TestServerRunsInAGroupOfItsOwn(t *testing.T) {
	script := filepath.Join(t.TempDir(), "cvmfs_server")
	// fields 1 and 5 of /proc/PID/stat: the process's id and its process group's (the same for the
	// leader of a group of its own)
	if err := os.WriteFile(script, []byte("#!/bin/sh\ncut -d' ' -f1,5 /proc/$$/stat\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := (Server{Command: script, Stdout: &out}).Transaction("test.repo"); err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(out.String())
	if len(f) != 2 || f[0] != f[1] {
		t.Errorf("cvmfs_server's pid and process group: %q, want a group of its own (both the same)", out.String())
	}
}
