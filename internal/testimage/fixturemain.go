package testimage

import (
	"fmt"
	"os"
	"testing"
)

// MainWithFixtureLayouts is the TestMain of a package whose tests publish fixtures from OCI layouts
// (no registry): it writes the layouts of the named fixtures, with a stand-in busybox, into a temp
// dir, sets *dir to it, runs the tests, removes the dir and exits with the tests' status.
func MainWithFixtureLayouts(m *testing.M, dir *string, names ...string) {
	d, err := os.MkdirTemp("", "cargohold-fixtures-")
	if err != nil {
		panic(err)
	}
	*dir = d
	busybox := []byte("#!/bin/sh\necho not really busybox\n")
	if err := WriteFixtureLayouts(d, busybox, names...); err != nil {
		panic(err)
	}
	code := m.Run()
	if err := os.RemoveAll(d); err != nil {
		fmt.Fprintln(os.Stderr, "removing the test fixtures:", err)
	}
	os.Exit(code)
}
