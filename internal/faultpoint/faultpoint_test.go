package faultpoint

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

func TestParse(t *testing.T) {
	for v, want := range map[string]spec{
		"":                   {},
		"layer-renamed":      {name: "layer-renamed", nth: 1},
		"layer-renamed:3":    {name: "layer-renamed", nth: 3},
		"layer-renamed:stop": {name: "layer-renamed", nth: 1, stop: true},
		"a:2:stop":           {name: "a", nth: 2, stop: true},
	} {
		t.Run(v, func(t *testing.T) {
			if got := parse(v); got != want {
				t.Errorf("parse(%q) = %+v, want %+v", v, got, want)
			}
		})
	}
	for _, v := range []string{":1", "a:0", "a:x", "a:1:2", "a:1:kill"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("parse(%q) accepted a malformed value", v)
				}
			}()
			parse(v)
		}()
	}
}

// The child (this test binary again) passes "p" three times; CARGOHOLD_FAULT=p:2 must kill it at
// the second pass, before it prints "after 2".
func TestHitKillsAtTheNthPass(t *testing.T) {
	if os.Getenv("FAULTPOINT_CHILD") != "" {
		for i := 1; i <= 3; i++ {
			Hit("other")
			Hit("p")
			fmt.Printf("after %d\n", i)
		}
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHitKillsAtTheNthPass$")
	cmd.Env = append(os.Environ(), "FAULTPOINT_CHILD=1", EnvVar+"=p:2")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed by SIGKILL: %v", err)
	}
	if string(out) != "after 1\n" {
		t.Errorf("child printed %q before dying, want only %q", out, "after 1\n")
	}
	if !strings.Contains(stderr.String(), "fault point p (hit 2)") {
		t.Errorf("child did not announce the fault: %q", stderr.String())
	}
}

func TestHitWithoutFaultIsFree(t *testing.T) {
	if target.name != "" {
		// Not a missing tool: this binary is the child of a fault test, run with a fault configured.
		t.Skip(EnvVar + " is set")
	}
	if n := testing.AllocsPerRun(100, func() { Hit("layer-renamed") }); n != 0 {
		t.Errorf("Hit allocates %v times without a fault configured", n)
	}
}
