package publish

import (
	"errors"
	"fmt"
	"strings"
)

// Kinds of a run's failure (errkind), for errors.Is (the CLI's exit status). A hook's failure is a
// *hooks.Error, a refused store one of layout's errors (ErrNotStore, ErrLocked, ...), an interrupted
// run an *InterruptedError.
var (
	// ErrImagesFailed: some images failed; the store holds the others.
	ErrImagesFailed = errors.New("images failed")
	// ErrStore: the store could not be opened, changed (prune) or closed.
	ErrStore = errors.New("store")
	// ErrRegister: the store could not be added to the storage.conf Plan.Register names.
	ErrRegister = errors.New("register")
	// ErrRepository: publishing through the store's CVMFS repository failed on the repository's
	// side (a cvmfs_server command, its configuration refusing the images); the CLI exits as for a
	// failed hook.
	ErrRepository = errors.New("cvmfs repository")
)

// InterruptedError is the error of a run whose context ended: the run stopped after discarding the
// staging of the image under way, closing the store and running on-failure. It unwraps to the
// context's cause (the CLI's signal).
type InterruptedError struct {
	Cause        error    // context.Cause of the run's context
	NotPublished []string // the references of the store under way that were not published
	Store        string   // that store
	// NotStarted are the stores after it, not opened at all.
	NotStarted []Store
}

func (e *InterruptedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v: not published: %s", e.Cause, strings.Join(e.NotPublished, ", "))
	for _, s := range e.NotStarted {
		fmt.Fprintf(&b, "; not started: %s (store %s)", strings.Join(s.Refs(), ", "), s.Dir)
	}
	b.WriteString("; the store holds what was published before")
	return b.String()
}

func (e *InterruptedError) Unwrap() error { return e.Cause }
