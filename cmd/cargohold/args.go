package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// reorderArgs moves a command's flags before its arguments, so that "publish REF --store S" works
// as in podman and skopeo. urfave/cli v2 parses a command's flags with Go's flag package, which stops
// at the first argument and would take "--store" for an image, and v2 has no setting to go on (its
// issues #427 and #976; v3 parses flags after arguments): with v2 this shim is the only way (see
// docs/DESIGN.md, "The command line"). It reads the commands' own flag definitions, so it knows
// which flags take a value. Everything after "--" stays an argument.
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	rest := args[1:]
	commands := app.Commands
	for len(rest) > 0 {
		cmd := findCommand(commands, rest[0])
		if cmd == nil {
			break
		}
		out, rest = append(out, rest[0]), rest[1:]
		if len(cmd.Subcommands) == 0 {
			return append(out, flagsFirst(cmd.Flags, rest)...)
		}
		commands = cmd.Subcommands
	}
	return append(out, rest...)
}

func findCommand(commands []*cli.Command, name string) *cli.Command {
	for _, c := range commands {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// flagsFirst returns args with the flags (and the values of those that take one) first.
func flagsFirst(flags []cli.Flag, args []string) []string {
	var flagArgs, positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return append(append(flagArgs, "--"), append(positional, args[i+1:]...)...)
		case strings.HasPrefix(a, "-") && a != "-":
			flagArgs = append(flagArgs, a)
			if !strings.Contains(a, "=") && takesValue(flags, a) && i+1 < len(args) {
				i++
				flagArgs = append(flagArgs, args[i])
			}
		default:
			positional = append(positional, a)
		}
	}
	if len(positional) > 0 {
		flagArgs = append(flagArgs, "--") // an argument that starts with "-" after all stays one
	}
	return append(flagArgs, positional...)
}

// takesValue says whether the flag arg ("--store", "-q") is one that reads the next word.
func takesValue(flags []cli.Flag, arg string) bool {
	name := strings.TrimLeft(arg, "-")
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				doc, ok := f.(cli.DocGenerationFlag)
				return ok && doc.TakesValue()
			}
		}
	}
	return false
}
