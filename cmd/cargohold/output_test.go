package main

import (
	"encoding/json"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/cargohold/cargohold/internal/testenv"
)

// cargohold alone did nothing: it prints its help (on standard error) and exits 2.
func TestNoCommandPrintsHelpAndExits2(t *testing.T) {
	r := cargohold(t)
	r.want(t, 2, "USAGE:", "COMMANDS:", "publish", "conf")
	if r.stdout != "" {
		t.Errorf("help on standard output of a failed run:\n%s", r.stdout)
	}
}

// "help CMD [SUBCMD]" is "CMD [SUBCMD] --help": conf's help lists its subcommands, and a
// subcommand has its own.
func TestHelpOfSubcommands(t *testing.T) {
	r := cargohold(t, "help", "conf")
	r.want(t, 0)
	for _, sub := range []string{"snippet", "patch", "dropin", "user", "check"} {
		if !strings.Contains(r.stdout, "   "+sub+" ") {
			t.Errorf("help conf does not list %s:\n%s", sub, r.stdout)
		}
	}
	r = cargohold(t, "help", "conf", "patch")
	r.want(t, 0)
	if !strings.Contains(r.stdout, "cargohold conf patch") || !strings.Contains(r.stdout, "--file FILE") {
		t.Errorf("help conf patch:\n%s", r.stdout)
	}
}

// publish --help gives --jobs one default.
func TestJobsHasOneDefault(t *testing.T) {
	r := cargohold(t, "publish", "--help")
	r.want(t, 0)
	for _, line := range strings.Split(r.stdout, "\n") {
		if strings.Contains(line, "--jobs") && strings.Count(line, "default") != 1 {
			t.Errorf("--jobs: %q", line)
		}
	}
}

// Every command that prints a report takes --format json, and --json as its alias.
func TestFormatJSONEverywhere(t *testing.T) {
	testenv.RequireRoot(t)
	store := filepath.Join(t.TempDir(), "store")
	isJSON := func(args ...string) {
		t.Helper()
		r := cargohold(t, args...)
		r.want(t, 0)
		if !json.Valid([]byte(r.stdout)) {
			t.Errorf("%v printed no JSON document:\n%s", args, r.stdout)
		}
	}
	isJSON(publishArgs(store, "--format", "json")...)
	isJSON(publishArgs(store, "--json")...)
	for _, format := range [][]string{{"--format", "json"}, {"--json"}} {
		isJSON(append([]string{"ls", "--store", store}, format...)...)
		isJSON(append([]string{"inspect", "--store", store, "localhost/test/hello:1"}, format...)...)
		isJSON(append([]string{"check", "--store", store}, format...)...)
		isJSON(append([]string{"rm", "--store", store, "--dry-run", "localhost/test/hello:1"}, format...)...)
		isJSON(append([]string{"gc", "--store", store, "--dry-run"}, format...)...)
	}
	cargohold(t, "gc", "--store", store, "--format", "yaml").want(t, 2, `--format "yaml": want table or json`)
}

// One layer fetched is "1 layer".
func TestOneLayerIsSingular(t *testing.T) {
	testenv.RequireRoot(t)
	store := filepath.Join(t.TempDir(), "store")
	cargohold(t, publishArgs(store)...).want(t, 0)
	r := cargohold(t, "publish", "--store", store, "--insecure-policy", "--name", "localhost/test/other:1", ociRef("other:1"))
	r.want(t, 0)
	if !strings.Contains(r.stdout, "  1 layer, ") {
		t.Errorf("one layer fetched:\n%s", r.stdout)
	}
}

// ls, inspect, rm, gc and check expand the platform placeholders of --store as publish and conf
// do: this host's platform, or --platform's.
func TestStoreTemplateOnEveryCommand(t *testing.T) {
	testenv.RequireRoot(t)
	base := t.TempDir()
	template := filepath.Join(base, "{arch}")
	cargohold(t, publishArgs(template)...).want(t, 0)
	for _, args := range [][]string{
		{"ls"}, {"inspect", "localhost/test/hello:1"}, {"check"}, {"gc", "--dry-run"}, {"rm", "--dry-run", "localhost/test/hello:1"},
	} {
		r := cargohold(t, append(args, "--store", template)...)
		r.want(t, 0)
		if args[0] == "ls" && !strings.Contains(r.stdout, "localhost/test/hello:1") {
			t.Errorf("ls --store %s:\n%s", template, r.stdout)
		}
		other := "arm64"
		if runtime.GOARCH == "arm64" {
			other = "amd64"
		}
		r = cargohold(t, append(args, "--store", template, "--platform", "linux/"+other)...)
		if r.code == 0 || !strings.Contains(r.stderr, filepath.Join(base, other)) {
			t.Errorf("%v --platform linux/%s: exit %d, %s", args, other, r.code, r.stderr)
		}
	}
}
