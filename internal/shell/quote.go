// Package shell quotes words for a POSIX shell: hook commands (hooks) and the command lines
// cargohold prints for an admin to run (storageconf).
package shell

import (
	"regexp"
	"strings"
)

// safeWord is what sh takes literally without quotes.
var safeWord = regexp.MustCompile(`^[A-Za-z0-9_./:@%+=,-]+$`)

// Quote returns s as one sh word: unchanged if it has no special characters, else in single
// quotes (each single quote inside is closed, escaped and reopened).
func Quote(s string) string {
	if safeWord.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
