package main

import (
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// helpArgs turns "help CMD [SUBCMD...]" into "CMD [SUBCMD...] --help": urfave/cli's help command
// shows a command's own help without its subcommands, and no help for a subcommand at all.
func helpArgs(app *cli.App, args []string) []string {
	if len(args) < 3 || (args[1] != "help" && args[1] != "h") || findCommand(app.Commands, args[2]) == nil {
		return args
	}
	return append(append([]string{args[0]}, args[2:]...), "--help")
}

// reorderArgs moves a command's flags before its arguments, so that "publish REF --store S" works
// as in podman and skopeo. urfave/cli v2 parses a command's flags with Go's flag package, which stops
// at the first argument and would take "--store" for an image, and v2 has no setting to go on (its
// issues #427 and #976; v3 parses flags after arguments): with v2 this shim is the only way (see
// docs/DESIGN.md, "The command line"). It reads the commands' own flag definitions, so it knows
// which flags take a value. Everything after "--" stays an argument. A yes/no flag followed by
// "true" or "false" as a word of its own is an error: the word would be taken for an argument
// ("--tls-verify false" would publish an image named "false").
func reorderArgs(app *cli.App, args []string) ([]string, error) {
	if len(args) < 2 {
		return args, nil
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
			if err := checkBoolWords(cmd.Flags, rest); err != nil {
				return nil, err
			}
			return append(out, flagsFirst(cmd.Flags, rest)...), nil
		}
		commands = cmd.Subcommands
	}
	return append(out, rest...), nil
}

// checkBoolWords refuses "--flag true|false" for a yes/no flag, before "--".
func checkBoolWords(flags []cli.Flag, args []string) error {
	for i := 0; i+1 < len(args) && args[i] != "--"; i++ {
		word := strings.ToLower(args[i+1])
		if (word == "true" || word == "false") && !strings.Contains(args[i], "=") && isBool(flags, args[i]) {
			return usageErrorf("%s %s: a yes/no flag takes its value after \"=\": write %s=%s", args[i], args[i+1], args[i], word)
		}
	}
	return nil
}

// isBool says whether arg ("--tls-verify") is a yes/no flag of flags.
func isBool(flags []cli.Flag, arg string) bool {
	f := findFlag(flags, arg)
	_, ok := f.(*cli.BoolFlag)
	return ok
}

func findFlag(flags []cli.Flag, arg string) cli.Flag {
	if !strings.HasPrefix(arg, "-") {
		return nil
	}
	name := strings.TrimLeft(arg, "-")
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			return f
		}
	}
	return nil
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
	doc, ok := findFlag(flags, arg).(cli.DocGenerationFlag)
	return ok && doc.TakesValue()
}
