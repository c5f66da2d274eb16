package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// interruptible returns ctx cancelled, with a *signalError as its cause, by the first SIGINT or
// SIGTERM (systemd stopping the unit, a CI job cancelled, Ctrl-C). What runs under it stops at its
// next cancellation point and cleans up: a publish discards the image's staging, closes the store
// (its lock released) and runs on-failure; the process then exits 130 or 143. Later signals are
// caught too: a half-run on-failure hook (a CVMFS abort) is worse than waiting for it.
func interruptible(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-signals:
			cancel(&signalError{signal: s.(syscall.Signal)})
		case <-done:
		}
	}()
	return ctx, func() {
		close(done)
		signal.Stop(signals)
		cancel(nil)
	}
}
