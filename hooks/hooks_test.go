package hooks

import (
	"bytes"
	"errors"
	"github.com/cargohold/cargohold/internal/shell"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestExpandQuotesValues(t *testing.T) {
	v := Values{Store: "/cvmfs/sw.example.org/images", Repo: "sw.example.org"}
	for _, tc := range []struct{ cmd, want string }{
		{"cvmfs_server transaction {repo}", "cvmfs_server transaction sw.example.org"},
		{"ls {store}/overlay", "ls /cvmfs/sw.example.org/images/overlay"},
		{"echo ${store} {store}", "echo ${store} /cvmfs/sw.example.org/images"},
		{"echo '{not a placeholder}' {repo}", "echo '{not a placeholder}' sw.example.org"},
		{"echo \"a\\\"\" {repo}", "echo \"a\\\"\" sw.example.org"},
		{"{ echo x; } && echo {repo}", "{ echo x; } && echo sw.example.org"},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			got, err := Expand(tc.cmd, v)
			if err != nil || got != tc.want {
				t.Errorf("Expand(%q) = %q, %v; want %q", tc.cmd, got, err, tc.want)
			}
		})
	}
	got, err := Expand("rm -rf {store}", Values{Store: "/srv/my images/x'; reboot; '"})
	if err != nil || got != `rm -rf '/srv/my images/x'\''; reboot; '\'''` {
		t.Errorf("hostile store path: got %q, %v", got, err)
	}
}

func TestExpandRefusesMistakes(t *testing.T) {
	v := Values{Store: "/srv/images"}
	for _, tc := range []struct{ cmd, want string }{
		{"echo {stroe}", "unknown placeholder {stroe}"},
		{`echo "{store}"`, "inside quotes"},
		{`echo '{store}/x'`, "inside quotes"},
		{"cvmfs_server publish {repo}", "{repo} has no value: set cvmfs-repo"},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			if _, err := Expand(tc.cmd, v); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Expand(%q): want error containing %q, got %v", tc.cmd, tc.want, err)
			}
		})
	}
	if err := Check("cvmfs_server publish {repo}"); err != nil {
		t.Errorf("Check needs no values, got %v", err)
	}
	if err := Check("echo {stroe}"); err == nil {
		t.Error("Check accepts an unknown placeholder")
	}
}

// recorder returns a Set whose hooks append their name and environment to a log file.
func recorder(t *testing.T) (*Set, string) {
	log := filepath.Join(t.TempDir(), "calls")
	rec := func(name string) string {
		return "echo " + name + " {repo} {store} $CARGOHOLD_HOOK $CARGOHOLD_STORE >>" + shell.Quote(log)
	}
	return &Set{
		Before: rec("before"), After: rec("after"), OnFailure: rec("on-failure"),
		Values: Values{Store: "/srv/my store", Repo: "sw.example.org"},
		Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{},
	}, log
}

func calls(t *testing.T, log string) string {
	data, err := os.ReadFile(log)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(data)
}

func TestSuccessRunsBeforeAndAfter(t *testing.T) {
	s, log := recorder(t)
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := s.RunBefore(); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(false); err != nil {
		t.Fatal(err)
	}
	want := "before sw.example.org /srv/my store before /srv/my store\n" +
		"after sw.example.org /srv/my store after /srv/my store\n"
	if got := calls(t, log); got != want {
		t.Errorf("calls:\n%s\nwant:\n%s", got, want)
	}
}

func TestFailedPublishRunsOnFailure(t *testing.T) {
	s, log := recorder(t)
	if err := s.Finish(true); err != nil {
		t.Fatal(err)
	}
	if got, want := calls(t, log), "on-failure sw.example.org /srv/my store on-failure /srv/my store\n"; got != want {
		t.Errorf("calls: %q, want %q", got, want)
	}
}

func TestFailingAfterRunsOnFailure(t *testing.T) {
	s, log := recorder(t)
	s.After = "echo publishing failed >&2; exit 3"
	err := s.Finish(false)
	var herr *Error
	if !errors.As(err, &herr) || herr.Hook != "after" {
		t.Fatalf("want an after hook error, got %v", err)
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Errorf("want exit status 3 in %v", err)
	}
	if !strings.Contains(err.Error(), "after hook failed (echo publishing failed >&2; exit 3)") {
		t.Errorf("error does not name the hook and command: %v", err)
	}
	if got := s.Stderr.(*bytes.Buffer).String(); got != "publishing failed\n" {
		t.Errorf("hook stderr not passed through: %q", got)
	}
	if got := calls(t, log); !strings.HasPrefix(got, "on-failure ") {
		t.Errorf("on-failure did not run after the failed after hook: %q", got)
	}
}

func TestFailingOnFailureIsReported(t *testing.T) {
	s, _ := recorder(t)
	s.After, s.OnFailure = "false", "exit 7"
	err := s.Finish(false)
	if err == nil || !strings.Contains(err.Error(), "after hook failed") || !strings.Contains(err.Error(), "on-failure hook failed (exit 7)") {
		t.Fatalf("want both hook errors, got %v", err)
	}
}

func TestFailingBeforeIsAnError(t *testing.T) {
	s, log := recorder(t)
	s.Before = "echo busy; exit 1"
	err := s.RunBefore()
	var herr *Error
	if !errors.As(err, &herr) || herr.Hook != "before" {
		t.Fatalf("want a before hook error, got %v", err)
	}
	if got := s.Stdout.(*bytes.Buffer).String(); got != "busy\n" {
		t.Errorf("hook stdout not passed through: %q", got)
	}
	if got := calls(t, log); got != "" {
		t.Errorf("nothing else may run: %q", got)
	}
}

func TestEmptyHooksDoNothing(t *testing.T) {
	s := &Set{}
	if !s.Empty() || s.RunBefore() != nil || s.Finish(false) != nil || s.Finish(true) != nil {
		t.Fatal("an empty Set must do nothing and succeed")
	}
}

func TestValidateReportsTheHook(t *testing.T) {
	s := &Set{After: "cvmfs_server publish {repo}", Values: Values{Store: "/srv/images"}}
	if err := s.Validate(); err == nil || !strings.HasPrefix(err.Error(), "after hook: placeholder {repo} has no value") {
		t.Fatalf("got %v", err)
	}
}

// A value with spaces, quotes and shell syntax reaches the command as exactly one argument.
func TestHostileValueIsOneArgument(t *testing.T) {
	out := &bytes.Buffer{}
	s := &Set{After: "printf '<%s>\\n' {store}", Values: Values{Store: `/srv/a b/'$(touch x)';"*"`}, Stdout: out}
	if err := s.Finish(false); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "</srv/a b/'$(touch x)';\"*\">\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// Dir is where the hooks run (a recipe's directory), so that a relative path in a hook means what
// it means in the recipe.
func TestHooksRunInDir(t *testing.T) {
	dir := t.TempDir()
	s := Set{Before: "pwd > where", Dir: dir}
	if err := s.RunBefore(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "where"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(data)); got != dir {
		t.Errorf("the hook ran in %s, want %s", got, dir)
	}
}
