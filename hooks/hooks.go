// Package hooks runs the site's commands around a publish: the recipe's [publish] before, after and
// on-failure commands (or the publish flags of the same names). The typical use is a CVMFS
// transaction:
//
//	before     = "cvmfs_server transaction {repo}"
//	after      = "cvmfs_server publish {repo}"
//	on-failure = "cvmfs_server abort -f {repo}"
//
// A command is run by "sh -c" with its placeholders replaced by shell-quoted values, so a store path
// with spaces or quotes cannot split or inject words. The same values are in the environment
// (CARGOHOLD_STORE, CARGOHOLD_CVMFS_REPO, and CARGOHOLD_HOOK naming the hook) for hook scripts.
package hooks

import (
	"errors"
	"fmt"
	"github.com/cargohold/cargohold/internal/shell"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
)

// Values are what the placeholders stand for.
type Values struct {
	Store string // {store}: the store's absolute path
	Repo  string // {repo}: the CVMFS repository name ("" if unknown)
}

// placeholder matches "{name}". "${name}" is the shell's own parameter expansion and is left alone.
var placeholder = regexp.MustCompile(`\{([a-z][a-z0-9-]*)\}`)

func (v Values) lookup(name string) (value string, known bool) {
	switch name {
	case "store":
		return v.Store, true
	case "repo":
		return v.Repo, true
	}
	return "", false
}

// environ is the hook's environment: the caller's plus the values.
func (v Values) environ(hook string) []string {
	return append(os.Environ(),
		"CARGOHOLD_HOOK="+hook,
		"CARGOHOLD_STORE="+v.Store,
		"CARGOHOLD_CVMFS_REPO="+v.Repo)
}

// Check reports a malformed command without values: an unknown placeholder (a typo such as {stroe}
// would otherwise reach the shell as literal text) or a placeholder inside quotes (the value is
// quoted already; "{store}" would put the quotes into the argument).
func Check(command string) error {
	_, err := expand(command, nil)
	return err
}

// Expand returns command with every placeholder replaced by its shell-quoted value. A placeholder
// whose value is empty is an error: the command would run with an argument missing.
func Expand(command string, v Values) (string, error) {
	return expand(command, &v)
}

func expand(command string, v *Values) (string, error) {
	quoted := quotedRegions(command)
	var out strings.Builder
	last := 0
	for _, m := range placeholder.FindAllStringSubmatchIndex(command, -1) {
		start, end, name := m[0], m[1], command[m[2]:m[3]]
		if start > 0 && command[start-1] == '$' {
			continue // ${name}: the shell's
		}
		value, known := Values{}.lookup(name)
		if !known {
			return "", fmt.Errorf("unknown placeholder {%s} (known: {store}, {repo}; write ${%s} for a shell variable)", name, name)
		}
		if quoted[start] {
			return "", fmt.Errorf("placeholder {%s} is inside quotes: write it bare, cargohold shell-quotes the value itself", name)
		}
		if v != nil {
			value, _ = v.lookup(name)
			if value == "" {
				return "", fmt.Errorf("placeholder {%s} has no value%s", name, missingHint(name))
			}
		}
		out.WriteString(command[last:start])
		out.WriteString(shell.Quote(value))
		last = end
	}
	out.WriteString(command[last:])
	return out.String(), nil
}

func missingHint(name string) string {
	if name == "repo" {
		return ": set cvmfs-repo in the recipe's [publish] (or --cvmfs-repo), or put the store under /cvmfs/<repo>/"
	}
	return ""
}

// quotedRegions marks the bytes of command that lie inside single or double quotes, as sh reads
// them (backslash escapes outside single quotes). Nested $(...) is not tracked: it is rare in a
// hook and at worst makes Check miss a quoted placeholder.
func quotedRegions(command string) []bool {
	in := make([]bool, len(command))
	var quote byte // 0, '\'' or '"'
	for i := 0; i < len(command); i++ {
		c := command[i]
		switch {
		case quote == 0 && c == '\\', quote == '"' && c == '\\':
			if quote != 0 {
				in[i] = true
			}
			if i+1 < len(command) {
				i++
				in[i] = quote != 0
			}
		case quote == 0 && (c == '\'' || c == '"'):
			quote = c
		case quote != 0 && c == quote:
			quote = 0
		default:
			in[i] = quote != 0
		}
	}
	return in
}

// Error is a hook that could not run or exited non-zero.
type Error struct {
	Hook    string // "before", "after", "on-failure"
	Command string // as run, placeholders replaced
	Err     error
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s hook failed (%s): %v", e.Hook, e.Command, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Set is the hooks of one publish run. Empty commands are skipped.
type Set struct {
	Before, After, OnFailure string
	Values                   Values
	// Dir is the hooks' working directory; "" is the current one. With a recipe it is the recipe's
	// directory, so that a relative path in a hook means what it means in the recipe's other keys.
	Dir string
	// Where the hooks' output goes; nil means os.Stdout / os.Stderr.
	Stdout, Stderr io.Writer
}

// Empty reports whether no hook is configured.
func (s *Set) Empty() bool { return s.Before == "" && s.After == "" && s.OnFailure == "" }

// Validate expands every command, so that a bad command is reported before anything runs (a
// transaction opened by before and then an after that cannot even be expanded would stay open).
func (s *Set) Validate() error {
	for _, h := range []struct{ name, cmd string }{{"before", s.Before}, {"after", s.After}, {"on-failure", s.OnFailure}} {
		if h.cmd == "" {
			continue
		}
		if _, err := Expand(h.cmd, s.Values); err != nil {
			return fmt.Errorf("%s hook: %w", h.name, err)
		}
	}
	return nil
}

// RunBefore runs the before hook. If it fails, the caller must not publish, and must not run
// Finish either: on-failure undoes what before did, and before did not succeed (for CVMFS, the
// transaction may be someone else's).
func (s *Set) RunBefore() error { return s.run("before", s.Before) }

// Finish ends a run whose before hook succeeded (or was not set). If the publish succeeded, the
// after hook runs; if the publish failed, or after failed, on-failure runs. It returns the errors
// of the hooks that ran (nil if none failed).
func (s *Set) Finish(publishFailed bool) error {
	if !publishFailed {
		err := s.run("after", s.After)
		if err == nil {
			return nil
		}
		return errors.Join(err, s.run("on-failure", s.OnFailure))
	}
	return s.run("on-failure", s.OnFailure)
}

// run runs one hook to its end. It is not tied to a context on purpose: a hook interrupted half way
// (a CVMFS publish, say) is worse than one that finishes after cargohold was asked to stop.
func (s *Set) run(name, command string) error {
	if command == "" {
		return nil
	}
	expanded, err := Expand(command, s.Values)
	if err != nil {
		return &Error{Hook: name, Command: command, Err: err}
	}
	cmd := exec.Command("/bin/sh", "-c", expanded)
	cmd.Env = s.Values.environ(name)
	cmd.Dir = s.Dir
	cmd.Stdin = nil // /dev/null: a hook waiting for input would hang a cron run
	cmd.Stdout, cmd.Stderr = s.Stdout, s.Stderr
	if cmd.Stdout == nil {
		cmd.Stdout = os.Stdout
	}
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Run(); err != nil {
		return &Error{Hook: name, Command: expanded, Err: err}
	}
	return nil
}
