package main

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/cargohold/cargohold/hooks"
	"github.com/cargohold/cargohold/internal/errkind"
	"github.com/cargohold/cargohold/layout"
	"github.com/cargohold/cargohold/publish"
	"github.com/cargohold/cargohold/storageconf"
)

// Exit statuses, documented in the README; exitCode is the one place that picks them.
const (
	exitOK          = 0
	exitFailed      = 1 // some image failed (publish, rm, inspect); conf check: Podman will not see the store; any error of no other kind
	exitUsage       = 2 // what the user typed: bad flags, recipe or configuration; not a store; missing privileges
	exitStore       = 3 // the store could not be opened, locked or read; check found problems
	exitHook        = 4 // a before/after hook, or a step of publishing through CVMFS, failed
	exitSignalsBase = 128
)

// Kinds of failure that are not an error of a library package.
var (
	errUsage  = errors.New("usage")
	errStore  = errors.New("store")
	errFailed = errors.New("failed")
	// errNotSeen is conf check's answer "Podman will not see the store".
	errNotSeen = errors.New("podman will not see the store")
)

// usageError and storeError give err a kind for exitCode (errkind), keeping err's text and its own
// chain (errors.Is still finds layout.ErrLocked inside a store error).
func usageError(err error) error { return errkind.With(errUsage, err) }
func storeError(err error) error { return errkind.With(errStore, err) }

func usageErrorf(format string, a ...any) error { return usageError(fmt.Errorf(format, a...)) }

// reported is a failure whose details the command has printed already: only the status is left.
func reported(kind error) error { return errkind.With(kind, errors.New("")) }

// signalError is the cause of a context a signal cancelled (see interruptible): an error that wraps
// it exits 128 + the signal's number (130, 143).
type signalError struct {
	signal syscall.Signal
}

func (e *signalError) Error() string { return "interrupted by " + signalName(e.signal) }

func signalName(s syscall.Signal) string {
	switch s {
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return s.String()
}

// exitCode maps an error to the exit status, by kind; an error of no kind is a failure (1). The flag
// parser's own errors are marked as usage errors by run (see markRun).
func exitCode(err error) int {
	var interrupted *signalError
	var hookErr *hooks.Error
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &interrupted):
		return exitSignalsBase + int(interrupted.signal)
	case errors.Is(err, errUsage), errors.Is(err, layout.ErrNotStore), errors.Is(err, layout.ErrNotPrivileged),
		errors.Is(err, publish.ErrRegister), errors.Is(err, storageconf.ErrInvalid):
		return exitUsage
	case errors.Is(err, errStore), errors.Is(err, layout.ErrLocked), errors.Is(err, layout.ErrWrongDriver),
		errors.Is(err, layout.ErrNewerFormat), errors.Is(err, publish.ErrStore):
		return exitStore
	case errors.Is(err, errFailed), errors.Is(err, errNotSeen), errors.Is(err, publish.ErrImagesFailed):
		return exitFailed
	case errors.As(err, &hookErr), errors.Is(err, publish.ErrRepository):
		return exitHook
	}
	return exitFailed
}

// errorText is what run prints for err ("" for none: the command reported it).
func errorText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
