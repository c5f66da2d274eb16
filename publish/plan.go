// Package publish is a whole publish run, usable without the CLI. New plans it from the command line
// and a recipe: which image goes into which store with which builder.Options, what surrounds each
// store (hooks, CVMFS repository, store options), and what becomes of the names a recipe no longer
// lists; everything a plan can check is checked there, before anything runs. Run executes the plan:
// before hook, store lock, the images (builder), extras and prune, registration (storageconf), after
// or on-failure hook, and interruption, reporting each step to an Observer.
package publish

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cargohold/cargohold/builder"
	"github.com/cargohold/cargohold/cvmfs"
	"github.com/cargohold/cargohold/hooks"
	"github.com/cargohold/cargohold/internal/platform"
	"github.com/cargohold/cargohold/layout"
	"github.com/cargohold/cargohold/recipe"
)

// Input is what a run was asked to do: the command line's flags and arguments, and the recipe.
type Input struct {
	Store  string         // --store; "" takes the recipe's
	Recipe *recipe.Recipe // nil without --recipe
	Refs   []string       // IMAGE arguments
	Names  []string       // --name: extra names of the one IMAGE argument
	Prune  bool           // --prune

	// Settings are how to fetch each image, as the flags give it: they override the recipe's
	// [defaults]; an [[image]]'s own win (see fetchSettings).
	Settings recipe.Settings
	// EnvAuthFile is REGISTRY_AUTH_FILE: the auth file of an image for which neither a flag nor the
	// recipe names one (the environment is the least specific statement).
	EnvAuthFile string

	// Overrides are the [publish] keys given as flags; nil fields were not given.
	Overrides Overrides

	Jobs int // layers fetched and unpacked at once, by all images together; 0: builder's default
	// ImageJobs is how many images are published at once (builder.Publisher.ImageJobs); 0: builder's
	// default.
	ImageJobs int
	NoWait    bool   // fail (layout.ErrLocked) instead of waiting for another run's writer lock
	Register  string // a storage.conf to add each store to after its publish ("": none)
}

// Overrides are the flags that override the recipe's [publish] keys of the same name.
type Overrides struct {
	Before, After, OnFailure, CVMFSRepo, Hardlinks, Driver, Dedup *string
	CVMFS, CVMFSCatalogs                                          *bool
}

// Plan is a checked run: the stores in the order they are first named, each with its images, and
// how Run goes about them.
type Plan struct {
	Stores []Store
	Prune  bool
	Recipe bool // the images come from a recipe: names it no longer lists are extras (see Extras)

	Jobs      int    // Input.Jobs
	ImageJobs int    // Input.ImageJobs
	NoWait    bool   // Input.NoWait
	Register  string // Input.Register

	relativeStore bool   // see NamesStores
	hookDir       string // the hooks' working directory: the recipe's, else the current one
}

// Store is one store of a run and what is published into it.
type Store struct {
	Dir      string // absolute
	Requests []builder.Request
	Hooks    hooks.Set
	Options  layout.Options // CatalogMarkers, Driver, Create; the caller adds Lock
	// CopyHardlinksAcrossDirs is builder.Publisher's field of the same name.
	CopyHardlinksAcrossDirs bool
	// CVMFS, if set, publishes the store through its CVMFS repository ([publish] cvmfs): Begin says
	// where to open the store (with Options.ServedAt = Dir), Finish takes the place of the hooks.
	CVMFS *cvmfs.Publication

	claims map[string]string // every name the requests claim → the entry or argument claiming it
}

// target is one image for one platform, before it is put into its store.
type target struct {
	req      builder.Request
	platform string
	origin   string // the recipe entry or argument it comes from, for messages
}

// New checks in and plans the run. Its errors are the user's to fix (bad flags or recipe).
func New(in Input) (*Plan, error) {
	template, targets, settings, err := gather(in)
	if err != nil {
		return nil, err
	}
	if err := checkInput(in, template, targets); err != nil {
		return nil, err
	}
	plan := &Plan{Prune: in.Prune, Recipe: in.Recipe != nil, Jobs: in.Jobs, ImageJobs: in.ImageJobs, NoWait: in.NoWait, Register: in.Register}
	if in.Recipe != nil {
		plan.relativeStore = in.Store == "" && in.Recipe.RelativeStore
		plan.hookDir = in.Recipe.Dir
	}
	for _, t := range targets {
		if err := plan.add(template, t, settings); err != nil {
			if in.Recipe != nil && in.Recipe.Path != "" {
				err = fmt.Errorf("recipe %s: %w", in.Recipe.Path, err)
			}
			return nil, err
		}
	}
	return plan, nil
}

// NamesStores says whether each line of output should name its store: the run writes several, or
// the recipe gave its store as a relative path (resolved against the recipe's directory, which the
// reader of a cron log may not guess).
func (p *Plan) NamesStores() bool { return len(p.Stores) > 1 || p.relativeStore }

// gather lists the targets of the recipe and of the arguments, the store template, and the merged
// [publish] settings.
func gather(in Input) (string, []target, recipe.Publish, error) {
	template := in.Store
	env := recipe.Settings{Options: builder.Options{AuthFile: in.EnvAuthFile}}
	var settings recipe.Publish
	var targets []target
	if r := in.Recipe; r != nil {
		if template == "" {
			template = r.Store
		}
		settings = r.Publish
		for _, img := range r.Images {
			s := fetchSettings(img, in.Settings, r.Defaults, env)
			for _, p := range s.PlatformList() {
				t := newTarget(img.Ref, img.Names, s.Options, p)
				t.origin = fmt.Sprintf("%s (ref %q)", img.Where(), img.Ref)
				targets = append(targets, t)
			}
		}
	}
	for _, ref := range in.Refs {
		t := newTarget(ref, in.Names, in.Settings.Over(env).Options, in.Settings.Platform)
		t.origin = fmt.Sprintf("the argument %q", ref)
		targets = append(targets, t)
	}
	return template, targets, in.Overrides.apply(settings), nil
}

// fetchSettings is how an image of a recipe is fetched: its own settings, over the flags, over the
// recipe's [defaults], over the environment (REGISTRY_AUTH_FILE). The one place of that order.
func fetchSettings(img recipe.Image, flags, defaults, env recipe.Settings) recipe.Settings {
	return img.Over(flags.Over(defaults.Over(env))) // recipe.Settings.Over
}

// newTarget makes the request of ref for one platform ("": the host's).
func newTarget(ref string, names []string, opts builder.Options, platformName string) target {
	opts.Platform = platformName
	return target{req: builder.Request{Ref: ref, Names: names, Options: &opts}, platform: platformName}
}

// checkInput refuses what makes no run: no store, nothing to publish, and flags that do not fit.
func checkInput(in Input, template string, targets []target) error {
	switch {
	case template == "":
		return errors.New("no store: give --store DIR or store = \"DIR\" in the recipe")
	case len(targets) == 0:
		return errors.New("nothing to publish: give IMAGE arguments or --recipe FILE")
	case in.Prune && in.Recipe == nil:
		return errors.New("--prune needs --recipe: it removes what the recipe no longer lists")
	case len(in.Names) > 0 && len(in.Refs) != 1:
		return fmt.Errorf("--name applies to exactly one IMAGE argument, got %d", len(in.Refs))
	}
	for _, t := range targets {
		if err := t.req.Check(); err != nil {
			return err
		}
	}
	return nil
}

// add puts t into the store its platform names in the template. In a platform template a target
// without a platform gets the host's, so that an image of another platform fails instead of landing
// in the host's store. A name points to one image in a store, so two platforms of one image cannot
// share a store.
func (p *Plan) add(template string, t target, settings recipe.Publish) error {
	if recipe.IsStoreTemplate(template) && t.platform == "" {
		t.platform = platform.Host().String()
		t.req.Options.Platform = t.platform
	}
	dir, err := recipe.StorePath(template, t.platform)
	if err != nil {
		return err
	}
	if dir, err = layout.ResolveDir(dir); err != nil { // two spellings of one store are one store
		return err
	}
	s, err := p.store(dir, settings)
	if err != nil {
		return err
	}
	for _, other := range s.Requests {
		if other.Ref == t.req.Ref && other.Options.Platform != t.platform {
			return fmt.Errorf("%s is listed for platforms %s and %s, which would share store %s: put {arch} or {platform} into the store path (one store per platform)",
				t.req.Ref, other.Options.Platform, t.platform, dir)
		}
	}
	if err := s.claim(t); err != nil {
		return err
	}
	s.Requests = append(s.Requests, t.req)
	return nil
}

// claim records the names t's image will have in the store. A name points to one image: two
// entries claiming it would move it from one image to the other on every run, and nodes would
// see either, so that is refused.
func (s *Store) claim(t target) error {
	for _, name := range t.req.Claims() {
		if other, taken := s.claims[name]; taken {
			return fmt.Errorf("%s and %s both claim the name %s in store %s; a name points to one image, "+
				"so it would move between the two on every run: give each name to one image", other, t.origin, name, s.Dir)
		}
		if s.claims == nil {
			s.claims = map[string]string{}
		}
		s.claims[name] = t.origin
	}
	return nil
}

// Listed is every name the store's requests claim (see builder.Request.Claims). A name the
// recipe lists is never an extra, even when its image failed in this run.
func (s *Store) Listed() []string {
	names := make([]string, 0, len(s.claims))
	for name := range s.claims {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// store returns the plan's store at dir, set up from settings when it is new to the plan.
func (p *Plan) store(dir string, settings recipe.Publish) (*Store, error) {
	for i := range p.Stores {
		if p.Stores[i].Dir == dir {
			return &p.Stores[i], nil
		}
	}
	s, err := setUp(dir, settings, p.hookDir)
	if err != nil {
		return nil, err
	}
	p.Stores = append(p.Stores, s)
	return &p.Stores[len(p.Stores)-1], nil
}

// Refs lists a store's requests by reference, for messages about what was not published.
func (s *Store) Refs() []string {
	refs := make([]string, len(s.Requests))
	for i, r := range s.Requests {
		refs[i] = r.Ref
	}
	return refs
}
