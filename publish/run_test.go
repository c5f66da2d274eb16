package publish

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cargohold/cargohold/builder"
	"github.com/cargohold/cargohold/hooks"
	"github.com/cargohold/cargohold/internal/shell"
	"github.com/cargohold/cargohold/internal/testenv"
	"github.com/cargohold/cargohold/internal/testimage"
	"github.com/cargohold/cargohold/layout"
	"github.com/cargohold/cargohold/recipe"
)

// These tests run whole publish runs without the CLI, into real stores in temp dirs, from OCI
// layouts written by internal/testimage (an oci: reference needs no registry). Publishing needs root
// (owners, device nodes, xattrs); no Podman.

var layouts string // dir of the OCI layouts hello, other, multi

func TestMain(m *testing.M) {
	testimage.MainWithFixtureLayouts(m, &layouts, "hello", "other", "multi")
}

// ociRef is the oci: reference of a fixture ("hello" → its tag 1); "none" names a layout that does
// not exist (an image that fails).
func ociRef(name string) string { return "oci:" + filepath.Join(layouts, name) + ":1" }

// nameOf is the name a test image gets in the store.
func nameOf(name string) string { return "localhost/test/" + name + ":1" }

// recipeInput is the input of a run of a recipe listing the fixtures into store.
func recipeInput(t *testing.T, store string, prune bool, names ...string) Input {
	text := fmt.Sprintf("store = %q\n", store)
	for _, n := range names {
		text += fmt.Sprintf("[[image]]\nref = %q\nnames = [%q]\n", ociRef(n), nameOf(n))
	}
	return Input{Recipe: mustRecipe(t, text), Prune: prune, Settings: recipe.Settings{Options: builder.Options{InsecurePolicy: true}}}
}

// recorder collects a run's events (all but layer progress) and can act on one of them.
type recorder struct {
	mu     sync.Mutex
	events []Event
	on     func(Event) // called with every event, progress included
}

func (r *recorder) event(e Event) {
	if r.on != nil {
		r.on(e)
	}
	if _, ok := e.(LayerProgress); ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) observer() Observer { return Observer{Event: r.event} }

// all returns the recorded events of type E.
func all[E Event](r *recorder) []E {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []E
	for _, e := range r.events {
		if e, ok := e.(E); ok {
			out = append(out, e)
		}
	}
	return out
}

// mustRun plans in and runs it, returning Run's error.
func mustRun(t *testing.T, ctx context.Context, in Input, rec *recorder) error {
	t.Helper()
	plan, err := New(in)
	if err != nil {
		t.Fatal(err)
	}
	if rec == nil {
		rec = &recorder{}
	}
	return Run(ctx, plan, rec.observer())
}

// storeNames is every name the store at dir holds (nil if it is no store).
func storeNames(t *testing.T, dir string) []string {
	t.Helper()
	snap, err := layout.Read(dir)
	if errors.Is(err, layout.ErrNotStore) {
		return nil
	} else if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, img := range snap.Images {
		info, err := snap.Info(img)
		if err != nil {
			t.Fatal(err)
		}
		if info.Superseded == nil { // a superseded image's digested names are cargohold's
			names = append(names, img.Names...)
		}
	}
	slices.Sort(names)
	return names
}

// assertClean checks that the store at dir is readable as Podman reads it and holds no leftovers:
// whatever a run stopped, it discarded.
func assertClean(t *testing.T, dir string) {
	t.Helper()
	r, err := layout.Check(t.Context(), dir, layout.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || len(r.Leftovers) > 0 {
		t.Errorf("store %s: problems %v, leftovers %v", dir, r.Problems, r.Leftovers)
	}
}

// hookLog returns hook commands that append their name (and the store) to a log file, and a
// function reading that log.
func hookLog(t *testing.T) (func(name string) string, func() []string) {
	log := filepath.Join(t.TempDir(), "hooks.log")
	cmd := func(name string) string { return "echo " + name + " {store} >>" + shell.Quote(log) }
	read := func() []string {
		data, err := os.ReadFile(log)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		} else if err != nil {
			t.Fatal(err)
		}
		return strings.Split(strings.TrimSpace(string(data)), "\n")
	}
	return cmd, read
}

// The hooks run in order around the store: before first (nothing is written if it fails), then after
// on success or on-failure when anything failed (the after hook included); a failing after hook fails
// a good run, a failing on-failure hook is reported beside the publish's own error.
func TestHookOrder(t *testing.T) {
	testenv.RequireRoot(t)
	for _, tc := range []struct {
		name                     string
		images                   []string
		before, after, onFailure string // appended to the logging command
		wantLog                  []string
		wantErr                  func(error) bool
		wantNames                []string // in the store afterwards; nil: no store at all
		wantHookFailed           bool
	}{{
		name: "all succeed", images: []string{"hello"},
		wantLog: []string{"before", "after"}, wantErr: isNil, wantNames: []string{nameOf("hello")},
	}, {
		name: "an image fails", images: []string{"hello", "none"},
		wantLog: []string{"before", "on-failure"}, wantErr: is(ErrImagesFailed), wantNames: []string{nameOf("hello")},
	}, {
		name: "before fails", images: []string{"hello"}, before: "; exit 3",
		wantLog: []string{"before"}, wantErr: isHookError("before"), wantNames: nil,
	}, {
		name: "after fails, on-failure follows", images: []string{"hello"}, after: "; exit 5",
		wantLog: []string{"before", "after", "on-failure"}, wantErr: isHookError("after"), wantNames: []string{nameOf("hello")},
	}, {
		name: "on-failure fails beside a failed image", images: []string{"none"}, onFailure: "; exit 6",
		wantLog: []string{"before", "on-failure"}, wantErr: is(ErrImagesFailed), wantNames: []string{}, wantHookFailed: true,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			store := filepath.Join(t.TempDir(), "store")
			hook, readLog := hookLog(t)
			in := recipeInput(t, store, false, tc.images...)
			in.Overrides = Overrides{Before: ptr(hook("before") + tc.before), After: ptr(hook("after") + tc.after),
				OnFailure: ptr(hook("on-failure") + tc.onFailure)}
			rec := &recorder{}
			err := mustRun(t, t.Context(), in, rec)
			if !tc.wantErr(err) {
				t.Errorf("Run: %v", err)
			}
			var want []string
			for _, h := range tc.wantLog {
				want = append(want, h+" "+store)
			}
			if got := readLog(); !slices.Equal(got, want) {
				t.Errorf("hooks ran: %q, want %q", got, want)
			}
			if got := storeNames(t, store); tc.wantNames == nil && got != nil || !slices.Equal(got, tc.wantNames) {
				t.Errorf("store holds %q, want %q", got, tc.wantNames)
			}
			if tc.wantNames == nil {
				if _, err := os.Stat(store); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("the store was created: %v", err)
				}
			}
			if got := len(all[HookFailed](rec)) > 0; got != tc.wantHookFailed {
				t.Errorf("HookFailed reported: %v, want %v", got, tc.wantHookFailed)
			}
		})
	}
}

func isNil(err error) bool { return err == nil }

func is(kind error) func(error) bool { return func(err error) bool { return errors.Is(err, kind) } }

func isHookError(hook string) func(error) bool {
	return func(err error) bool {
		herr, ok := errors.AsType[*hooks.Error](err)
		return ok && herr.Hook == hook
	}
}

// Names a recipe no longer lists are reported; --prune removes them (an image left without names is
// superseded, as by rm), but only after a run in which every image succeeded. The steps run one after
// another on one store.
func TestPruneOnlyAfterFullSuccess(t *testing.T) {
	testenv.RequireRoot(t)
	store := filepath.Join(t.TempDir(), "store")
	for _, step := range []struct {
		name       string
		images     []string
		prune      bool
		wantAction ExtrasAction // NoExtras: no ExtrasFound event
		wantNames  []string
		wantPruned []string
	}{
		{"both published", []string{"hello", "other"}, false, NoExtras, []string{nameOf("hello"), nameOf("other")}, nil},
		{"other no longer listed", []string{"hello"}, false, ReportExtras, []string{nameOf("hello"), nameOf("other")}, nil},
		{"--prune, but an image failed", []string{"hello", "none"}, true, KeepForFailure, []string{nameOf("hello"), nameOf("other")}, nil},
		{"--prune after full success", []string{"hello"}, true, RemoveExtras, []string{nameOf("hello")}, []string{nameOf("other")}},
		{"nothing left to prune", []string{"hello"}, true, NoExtras, []string{nameOf("hello")}, nil},
	} {
		t.Run(step.name, func(t *testing.T) {
			rec := &recorder{}
			err := mustRun(t, t.Context(), recipeInput(t, store, step.prune, step.images...), rec)
			if failed := slices.Contains(step.images, "none"); failed != errors.Is(err, ErrImagesFailed) || !failed && err != nil {
				t.Fatalf("Run: %v", err)
			}
			extras := all[ExtrasFound](rec)
			switch {
			case step.wantAction == NoExtras && len(extras) > 0:
				t.Errorf("extras reported: %+v", extras)
			case step.wantAction != NoExtras && (len(extras) != 1 || extras[0].Action != step.wantAction ||
				!slices.Equal(extras[0].Names, []string{nameOf("other")})):
				t.Errorf("extras: %+v, want %v of %s", extras, step.wantAction, nameOf("other"))
			}
			var pruned []string
			for _, p := range all[Pruned](rec) {
				pruned = append(pruned, p.Name)
				if !p.Superseded || len(p.KeptAs) != 1 || !strings.HasPrefix(p.KeptAs[0], "localhost/test/other@sha256:") {
					t.Errorf("pruned %+v, want its image superseded under its digested name", p.Removal)
				}
			}
			if !slices.Equal(pruned, step.wantPruned) {
				t.Errorf("pruned %q, want %q", pruned, step.wantPruned)
			}
			if got := storeNames(t, store); !slices.Equal(got, step.wantNames) {
				t.Errorf("store holds %q, want %q", got, step.wantNames)
			}
			if done := all[StoreDone](rec); len(done) != 1 || !slices.Equal(reportPruned(done[0].Report), step.wantPruned) {
				t.Errorf("report: %+v", done)
			}
		})
	}
}

func reportPruned(r *Report) []string {
	var names []string
	for _, p := range r.Pruned {
		names = append(names, p.Names...)
	}
	return names
}

// A run whose context ends stops where it is: the image under way is discarded (no staging left),
// the store is closed, on-failure runs, and the error names what was not published and the stores
// not started.
func TestInterruption(t *testing.T) {
	testenv.RequireRoot(t)
	stop := errors.New("stopped by the test")
	multiStore := func(t *testing.T, base string) Input {
		in := recipeInput(t, "", false, "multi")
		in.Recipe.Store = filepath.Join(base, "{arch}")
		in.Recipe.Defaults.Platforms = []string{"linux/amd64", "linux/arm64"}
		return in
	}
	for _, tc := range []struct {
		name             string
		input            func(t *testing.T, base string) Input
		cancelOn         func(Event) bool // nil: cancelled before the run
		holdLock         bool
		wantNotPublished []string
		wantNotStarted   []string // store dirs, relative to base
		wantNames        []string // in base/store
		imageJobs        int      // Input.ImageJobs
	}{{
		name:             "before the run",
		wantNotPublished: []string{ociRef("hello"), ociRef("other")},
	}, {
		name:             "waiting for another run's lock",
		cancelOn:         func(e Event) bool { _, ok := e.(LockWaiting); return ok },
		holdLock:         true,
		wantNotPublished: []string{ociRef("hello"), ociRef("other")},
		wantNames:        []string{},
	}, {
		name:             "in the middle of an image",
		cancelOn:         func(e Event) bool { p, ok := e.(LayerProgress); return ok && p.Ref == ociRef("hello") },
		wantNotPublished: []string{ociRef("hello"), ociRef("other")},
		wantNames:        []string{},
	}, {
		name:             "between two images (one image at a time)",
		imageJobs:        1,
		cancelOn:         func(e Event) bool { d, ok := e.(ImageDone); return ok && d.Ref == ociRef("hello") },
		wantNotPublished: []string{ociRef("other")},
		wantNames:        []string{nameOf("hello")},
	}, {
		name:             "in the first of two stores",
		input:            multiStore,
		cancelOn:         func(e Event) bool { _, ok := e.(ImageStarted); return ok },
		wantNotPublished: []string{ociRef("multi")},
		wantNotStarted:   []string{"arm64"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			store := filepath.Join(base, "store")
			in := recipeInput(t, store, false, "hello", "other")
			if tc.input != nil {
				in = tc.input(t, base)
				store = filepath.Join(base, "amd64")
			}
			if tc.holdLock {
				held, err := layout.OpenWithOptions(t.Context(), store, layout.Options{Create: true})
				if err != nil {
					t.Fatal(err)
				}
				defer func() { _ = held.Close() }()
			}
			in.ImageJobs = tc.imageJobs
			hook, readLog := hookLog(t)
			in.Overrides = Overrides{After: ptr(hook("after")), OnFailure: ptr(hook("on-failure"))}
			ctx, cancel := context.WithCancelCause(t.Context())
			rec := &recorder{}
			if tc.cancelOn == nil {
				cancel(stop)
			} else {
				rec.on = func(e Event) {
					if tc.cancelOn(e) {
						cancel(stop)
					}
				}
			}
			err := mustRun(t, ctx, in, rec)
			stopped, ok := errors.AsType[*InterruptedError](err)
			if !ok || !errors.Is(err, stop) {
				t.Fatalf("Run: %v, want an *InterruptedError with the context's cause", err)
			}
			if !slices.Equal(stopped.NotPublished, tc.wantNotPublished) {
				t.Errorf("not published: %q, want %q", stopped.NotPublished, tc.wantNotPublished)
			}
			var notStarted []string
			for _, s := range stopped.NotStarted {
				notStarted = append(notStarted, strings.TrimPrefix(s.Dir, base+"/"))
				if _, err := os.Stat(s.Dir); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("the store not started %s was created: %v", s.Dir, err)
				}
			}
			if !slices.Equal(notStarted, tc.wantNotStarted) {
				t.Errorf("not started: %q, want %q", notStarted, tc.wantNotStarted)
			}
			if !strings.Contains(err.Error(), "not published: "+strings.Join(tc.wantNotPublished, ", ")) {
				t.Errorf("the message does not say what was not published: %v", err)
			}
			if got, want := readLog(), []string{"on-failure " + store}; !slices.Equal(got, want) {
				t.Errorf("hooks ran: %q, want %q", got, want)
			}
			if tc.wantNames != nil {
				if got := storeNames(t, store); !slices.Equal(got, tc.wantNames) {
					t.Errorf("store holds %q, want %q", got, tc.wantNames)
				}
			}
			if _, err := os.Stat(store); err == nil && !tc.holdLock {
				assertClean(t, store)
			}
		})
	}
}

// A template store path makes one store per platform: each gets its platform's image, between its
// own hooks; an image of another platform fails in that store only, and the run's error says so.
func TestMultiStoreRun(t *testing.T) {
	testenv.RequireRoot(t)
	base := t.TempDir()
	in := recipeInput(t, "", false, "multi", "hello")
	in.Recipe.Store = filepath.Join(base, "{arch}")
	in.Recipe.Defaults.Platforms = []string{"linux/amd64", "linux/arm64"}
	hook, readLog := hookLog(t)
	in.Overrides = Overrides{Before: ptr(hook("before")), After: ptr(hook("after")), OnFailure: ptr(hook("on-failure"))}
	rec := &recorder{}
	err := mustRun(t, t.Context(), in, rec)
	if !errors.Is(err, ErrImagesFailed) {
		t.Fatalf("Run: %v, want ErrImagesFailed (hello is only for %s)", err, runtime.GOARCH)
	}
	amd64, arm64 := filepath.Join(base, "amd64"), filepath.Join(base, "arm64")
	host, other := amd64, arm64
	if runtime.GOARCH == "arm64" {
		host, other = arm64, amd64
	}
	want := map[string][]string{
		host:  {nameOf("hello"), nameOf("multi")},
		other: {nameOf("multi")},
	}
	for dir, names := range want {
		if got := storeNames(t, dir); !slices.Equal(got, names) {
			t.Errorf("store %s holds %q, want %q", dir, got, names)
		}
		assertClean(t, dir)
	}
	hookEnd := map[string]string{host: "after", other: "on-failure"}
	wantLog := []string{"before " + amd64, hookEnd[amd64] + " " + amd64, "before " + arm64, hookEnd[arm64] + " " + arm64}
	if got := readLog(); !slices.Equal(got, wantLog) {
		t.Errorf("hooks ran: %q, want %q", got, wantLog)
	}
	var failedIn []string
	for _, d := range all[ImageDone](rec) {
		if d.Err != nil {
			failedIn = append(failedIn, d.Store+" "+d.Ref)
		}
	}
	if want := []string{other + " " + ociRef("hello")}; !slices.Equal(failedIn, want) {
		t.Errorf("failed: %q, want %q", failedIn, want)
	}
	if reports := all[StoreDone](rec); len(reports) != 2 || reports[0].Report.Store != amd64 || reports[1].Report.Store != arm64 {
		t.Errorf("reports: %+v", reports)
	}
}

// With NoWait a store another run holds fails at once (layout.ErrLocked, a store error), and
// on-failure runs; Register adds each store to a storage.conf after its publish.
func TestLockedStoreAndRegister(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	store, conf := filepath.Join(dir, "store"), filepath.Join(dir, "storage.conf")
	in := recipeInput(t, store, false, "hello")
	in.Register = conf
	rec := &recorder{}
	if err := mustRun(t, t.Context(), in, rec); err != nil {
		t.Fatal(err)
	}
	if reg := all[Registered](rec); len(reg) != 1 || reg[0].File != conf || !reg[0].Changed {
		t.Errorf("registered: %+v", reg)
	}
	if data, err := os.ReadFile(conf); err != nil || !strings.Contains(string(data), store) {
		t.Errorf("%s does not list the store: %v\n%s", conf, err, data)
	}

	held, err := layout.OpenWithOptions(t.Context(), store, layout.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = held.Close() }()
	hook, readLog := hookLog(t)
	in.NoWait, in.Overrides = true, Overrides{OnFailure: ptr(hook("on-failure"))}
	err = mustRun(t, t.Context(), in, nil)
	if !errors.Is(err, layout.ErrLocked) || !errors.Is(err, ErrStore) {
		t.Errorf("Run with NoWait on a held store: %v, want ErrLocked and ErrStore", err)
	}
	if got := readLog(); !slices.Equal(got, []string{"on-failure " + store}) {
		t.Errorf("hooks ran: %q", got)
	}
}
