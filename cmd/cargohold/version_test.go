package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The README's install command builds a binary whose --version names the checkout as git
// describes it (also where Go records no version control information: GOFLAGS=-buildvcs=false
// as CI sets it, a git worktree).
func TestREADMEInstallCommandStampsTheVersion(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	const target = "-o /usr/local/bin/cargohold ./cmd/cargohold"
	var command string
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "CGO_ENABLED=0 go build") && strings.HasSuffix(line, target) {
			command = line
			break
		}
	}
	if command == "" {
		t.Fatalf("README.md has no install command ending in %q", target)
	}
	bin := filepath.Join(t.TempDir(), "cargohold")
	command = strings.TrimSuffix(command, target) + "-o " + bin + " ./cmd/cargohold"
	// CI's checkout may belong to another user, and git then refuses to describe it.
	gitEnv := []string{"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=safe.directory", "GIT_CONFIG_VALUE_0=*"}
	build := exec.Command("sh", "-c", command)
	build.Dir, build.Env = root, append(os.Environ(), append(gitEnv, "GOFLAGS=-buildvcs=false")...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", command, err, out)
	}
	describe := exec.Command("git", "describe", "--tags", "--always", "--dirty")
	describe.Dir, describe.Env = root, append(os.Environ(), gitEnv...)
	want, err := describe.Output()
	if err != nil {
		t.Fatalf("git describe (CI runs from a git checkout): %v", err)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	if got := strings.TrimPrefix(first, "cargohold version "); got != strings.TrimSpace(string(want)) {
		t.Errorf("--version of the README's build says %q, want git describe's %q", first, strings.TrimSpace(string(want)))
	}
}
