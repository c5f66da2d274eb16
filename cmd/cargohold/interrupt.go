package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/cargohold/cargohold/layout"
	"github.com/cargohold/cargohold/publish"
)

// interruptible returns ctx cancelled, with an *interruptedError as its cause, by the first SIGINT
// or SIGTERM (systemd stopping the unit, a CI job cancelled, Ctrl-C). The run then stops fetching,
// builder discards the image's staging, the store is closed (its lock released), on-failure runs
// and the process exits 130 or 143. Later signals are caught too: a half-run on-failure hook
// (a CVMFS abort) is worse than waiting for it.
func interruptible(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-signals:
			cancel(&interruptedError{signal: s.(syscall.Signal)})
		case <-done:
		}
	}()
	return ctx, func() {
		close(done)
		signal.Stop(signals)
		cancel(nil)
	}
}

// interruption is the error of an interrupted run (nil if ctx was not interrupted by a signal),
// naming the references not published.
func interruption(ctx context.Context, refs []string) error {
	var sig *interruptedError
	if !errors.As(context.Cause(ctx), &sig) {
		return nil
	}
	return &interruptedError{signal: sig.signal, what: "not published: " + strings.Join(refs, ", ")}
}

// notPublished adds the images of the stores not started to the message.
func (e *interruptedError) notPublished(later []publish.Store) error {
	for _, s := range later {
		e.what += fmt.Sprintf("; not started: %s (store %s)", strings.Join(s.Refs(), ", "), s.Dir)
	}
	e.what += "; the store holds what was published before"
	return e
}

// openStore opens the store like layout.OpenWithOptions; a signal while it waits for another run's
// lock ends the wait.
func openStore(ctx context.Context, dir string, opts layout.Options, refs []string) (*layout.Store, error) {
	store, err := layout.OpenWithOptions(ctx, dir, opts)
	if err == nil {
		return store, nil
	}
	if ierr := interruption(ctx, refs); ierr != nil {
		return nil, ierr
	}
	return nil, storeError(fmt.Errorf("opening store %s: %w", dir, err))
}
