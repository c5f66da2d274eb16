// Package errkind gives an error a kind: a sentinel error (publish.ErrStore, storageconf.ErrInvalid,
// the CLI's usage error, ...) that errors.Is finds in it, while the error keeps its own text and
// chain. Packages mark their failures with it; the CLI maps kinds to exit statuses in one place
// (cmd/cargohold/errors.go).
package errkind

// With returns err marked with kind: errors.Is finds kind in it, errors.Is and errors.As still find
// what err wraps, and its text is err's alone.
func With(kind, err error) error { return &kindError{kind, err} }

type kindError struct{ kind, err error }

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }
