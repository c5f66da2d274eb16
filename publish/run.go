package publish

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/cargohold/cargohold/builder"
	"github.com/cargohold/cargohold/cvmfs"
	"github.com/cargohold/cargohold/internal/errkind"
	"github.com/cargohold/cargohold/layout"
	"github.com/cargohold/cargohold/storageconf"
)

// Run publishes the plan into each of its stores in turn, reporting each step to obs. A failure in
// one store does not stop the others; the first error is returned. When ctx ends, the run stops
// after cleaning up (the image under way is discarded, the store closed, on-failure run) and returns
// an *InterruptedError naming what was not published.
func Run(ctx context.Context, plan *Plan, obs Observer) error {
	r := &run{plan: plan, obs: obs}
	var first error
	for i, s := range plan.Stores {
		err := r.store(ctx, s)
		if stopped, ok := errors.AsType[*InterruptedError](err); ok {
			stopped.NotStarted = plan.Stores[i+1:]
			return stopped
		}
		if err != nil && first == nil {
			first = err
		}
	}
	return first
}

// run is one Run of a plan.
type run struct {
	plan *Plan
	obs  Observer
}

// store publishes the requests of one store between its hooks. The before hook runs before anything
// in the store is written; after or on-failure runs once the store is closed (deferred calls run last
// first). With [publish] cvmfs, the store's CVMFS publication takes the hooks' place (begin, finish).
func (r *run) store(ctx context.Context, s Store) (err error) {
	s.Hooks.Stdout, s.Hooks.Stderr = orDiscard(r.obs.HookStdout), orDiscard(r.obs.HookStderr)
	dir, err := r.begin(s)
	if err != nil {
		return fmt.Errorf("%w; nothing was published", err)
	}
	defer func() { err = r.finish(ctx, s, err) }()
	if ctx.Err() != nil {
		return interrupted(ctx, s.Dir, s.Refs()) // the context ended while before ran
	}
	store, err := r.open(ctx, s, dir)
	if err != nil {
		return err
	}
	defer closeStore(store, &err)
	report, notDone := r.images(ctx, store, s)
	if len(notDone) > 0 {
		return interrupted(ctx, s.Dir, notDone)
	}
	return r.end(ctx, store, &s, report)
}

// begin runs what comes before the store is opened and returns where to open it: the before hook,
// or with CVMFS the publication's Begin (a local shadow of the store, or a transaction). If it fails,
// nothing was written and finish must not run.
func (r *run) begin(s Store) (string, error) {
	if s.CVMFS == nil {
		return s.Dir, s.Hooks.RunBefore()
	}
	s.CVMFS.Server = cvmfs.Server{Stdout: s.Hooks.Stdout, Stderr: s.Hooks.Stderr}
	s.CVMFS.Stdout = s.Hooks.Stdout
	s.CVMFS.Warn = func(msg string) { r.obs.send(RepositoryRecovered{Store: s.Dir, Message: msg}) }
	dir, err := s.CVMFS.Begin()
	if err != nil {
		return "", errkind.With(ErrRepository, err)
	}
	return dir, nil
}

// finish runs what comes after the store is closed (see finishHooks), or with CVMFS the
// publication's Finish, which publishes the store's changes if err is nil.
func (r *run) finish(ctx context.Context, s Store, err error) error {
	if s.CVMFS == nil {
		return r.finishHooks(s, err)
	}
	ferr := s.CVMFS.Finish(ctx, err != nil)
	if ferr != nil {
		ferr = errkind.With(ErrRepository, ferr)
	}
	return r.reportBeside(s, err, ferr)
}

// open opens the store at dir (its own, or a CVMFS shadow of it) for writing, waiting for another
// run's lock (or with Plan.NoWait refusing to) until ctx ends.
func (r *run) open(ctx context.Context, s Store, dir string) (*layout.Store, error) {
	opts := s.Options
	opts.Lock = layout.LockOptions{NoWait: r.plan.NoWait, Waiting: func(pid int) {
		r.obs.send(LockWaiting{Store: s.Dir, HolderPID: pid})
	}}
	if dir != s.Dir {
		opts.ServedAt = s.Dir // readers know the store by its own path
	}
	store, err := layout.OpenWithOptions(ctx, dir, opts)
	if err != nil && ctx.Err() != nil {
		return nil, interrupted(ctx, s.Dir, s.Refs())
	}
	if err != nil {
		return nil, errkind.With(ErrStore, fmt.Errorf("opening store %s: %w", s.Dir, err))
	}
	if cleaned := store.Cleaned(); len(cleaned) > 0 {
		r.obs.send(LeftoversRemoved{Store: s.Dir, Leftovers: cleaned})
	}
	return store, nil
}

// images publishes the requests of s, several at once (builder.Publisher.PublishAll), and reports
// each in request order; when ctx ends it stops and returns the references not published.
func (r *run) images(ctx context.Context, store *layout.Store, s Store) (*Report, []string) {
	p := builder.Publisher{Store: store, Jobs: r.plan.Jobs, ImageJobs: r.plan.ImageJobs, CopyHardlinksAcrossDirs: s.CopyHardlinksAcrossDirs,
		Progress: func(e builder.ProgressEvent) { r.obs.send(LayerProgress{Store: s.Dir, ProgressEvent: e}) },
		OnRetry:  func(ref, msg string) { r.obs.send(ImageRetrying{Store: s.Dir, Ref: ref, Message: msg}) }}
	report := &Report{Store: store.Dir(), Driver: string(store.Driver()), Dedup: string(layout.DedupAuto), Images: []ImageReport{}}
	defer func() {
		if sharing, ok := store.SharingIfKnown(); ok {
			report.Dedup = sharing.String()
		}
	}()
	for _, req := range s.Requests {
		r.obs.send(ImageStarted{Store: s.Dir, Ref: req.Ref})
	}
	var notDone []string
	p.PublishAll(ctx, s.Requests, func(_ int, res builder.Result) {
		// Images are recorded in order: once one was stopped, none after it was published.
		if len(notDone) > 0 || (ctx.Err() != nil && res.Err != nil) {
			r.obs.send(ImageStopped{Store: s.Dir, Ref: res.Ref})
			notDone = append(notDone, res.Ref)
			return
		}
		report.add(res)
		r.obs.send(ImageDone{Store: s.Dir, Result: res})
	})
	return report, notDone
}

// end ends a store's publish once every image was tried: extras (with a recipe), the report,
// registration, and the error of the images that failed.
func (r *run) end(ctx context.Context, store *layout.Store, s *Store, report *Report) error {
	if r.plan.Recipe {
		if err := r.extras(ctx, store, s, report); err != nil {
			return err
		}
	}
	r.obs.send(StoreDone{Report: report})
	// The store is consistent whatever failed, so it is registered either way; but a new store into
	// which nothing was published is taken away when it is closed, and Podman fails on a registered
	// store that does not exist.
	discarded := store.DiscardedOnClose()
	if !discarded {
		if err := r.register(store); err != nil {
			return err
		}
	}
	if report.Failed > 0 {
		holds := "the store " + store.Dir() + " holds the others"
		switch {
		case discarded:
			holds = "nothing was published, so the new store " + store.Dir() + " is removed again"
		case report.Failed == len(report.Images):
			holds = "the store " + store.Dir() + " keeps the images it held before"
		}
		return errkind.With(ErrImagesFailed, fmt.Errorf("%d of %d images failed; %s", report.Failed, len(report.Images), holds))
	}
	return nil
}

// extras reports the names the recipe no longer lists, and with --prune removes them when every
// image succeeded (see Extras). A name the recipe lists is kept even when its image failed in this
// run: a failed image has no names in the report.
func (r *run) extras(ctx context.Context, store *layout.Store, s *Store, report *Report) error {
	names := store.NamesExcept(append(s.Listed(), report.names()...))
	action := Extras(names, r.plan.Prune, report.Failed)
	if action == NoExtras {
		return nil
	}
	r.obs.send(ExtrasFound{Store: store.Dir(), Names: names, Action: action, Failed: report.Failed})
	if action != RemoveExtras {
		report.Extra = names
		return nil
	}
	for _, name := range names {
		removal, err := store.Remove(ctx, name, layout.RemoveOptions{}) // superseded, as by rm: nodes may run it
		if err != nil {
			return errkind.With(ErrStore, fmt.Errorf("pruning %s: %w", name, err))
		}
		report.Pruned = append(report.Pruned, removal)
		r.obs.send(Pruned{Store: store.Dir(), Name: name, Removal: removal})
	}
	return nil
}

// register adds the store to the storage.conf Plan.Register names.
func (r *run) register(store *layout.Store) error {
	file := r.plan.Register
	if file == "" {
		return nil
	}
	changed, err := storageconf.Register(file, store.Dir(), store.Driver())
	if err != nil {
		return errkind.With(ErrRegister, fmt.Errorf("registering the store in %s: %w", file, err))
	}
	r.obs.send(Registered{Store: store.Dir(), File: file, Changed: changed})
	return nil
}

// finishHooks runs the after hook if err (what the store's publish returned) is nil, else the
// on-failure hook; the store is closed by then. A failing hook makes a successful publish fail with
// the hook's error; a failed publish keeps its own error, and the hook's is reported beside it.
func (r *run) finishHooks(s Store, err error) error {
	return r.reportBeside(s, err, s.Hooks.Finish(err != nil))
}

// reportBeside is the error of a store whose publish ended with err and whose finishing step (hooks,
// CVMFS) with ferr: a failed publish keeps its own, and ferr is reported beside it.
func (r *run) reportBeside(s Store, err, ferr error) error {
	switch {
	case ferr == nil:
		return err
	case err != nil:
		r.obs.send(HookFailed{Store: s.Dir, Err: ferr})
		return err
	}
	return ferr
}

// closeStore closes a store opened for writing, releasing its lock; a failure is the store's error
// if it had none.
func closeStore(store *layout.Store, err *error) {
	if cerr := store.Close(); cerr != nil && *err == nil {
		*err = errkind.With(ErrStore, fmt.Errorf("closing store %s: %w", store.Dir(), cerr))
	}
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// interrupted is the error of a store whose run stopped because ctx ended.
func interrupted(ctx context.Context, dir string, notPublished []string) error {
	return &InterruptedError{Cause: context.Cause(ctx), Store: dir, NotPublished: notPublished}
}
