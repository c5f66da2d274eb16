package publish

import (
	"fmt"

	"github.com/cargohold/cargohold/hooks"
	"github.com/cargohold/cargohold/layout"
	"github.com/cargohold/cargohold/recipe"
)

// apply lets the flags override the recipe's [publish] keys.
func (o Overrides) apply(p recipe.Publish) recipe.Publish {
	for _, f := range []struct {
		flag *string
		key  *string
	}{{o.Before, &p.Before}, {o.After, &p.After}, {o.OnFailure, &p.OnFailure}, {o.CVMFSRepo, &p.CVMFSRepo},
		{o.Hardlinks, &p.Hardlinks}, {o.Driver, &p.Driver}, {o.Dedup, &p.Dedup}} {
		if f.flag != nil {
			*f.key = *f.flag
		}
	}
	if o.CVMFSCatalogs != nil {
		p.CVMFSCatalogs = *o.CVMFSCatalogs
	}
	return p
}

// setUp checks the [publish] settings for the store at dir (absolute) and turns them into the
// store's hooks, run in hookDir ("": the current directory), and options.
func setUp(dir string, settings recipe.Publish, hookDir string) (Store, error) {
	copyLinks, err := recipe.CopyHardlinksAcrossDirs(settings.Hardlinks)
	if err != nil {
		return Store{}, err
	}
	var driver layout.Driver // "": the store's own, overlay for a new one
	if settings.Driver != "" {
		if driver, err = layout.ParseDriver(settings.Driver); err != nil {
			return Store{}, err
		}
	}
	dedup, err := layout.ParseDedup(settings.Dedup)
	if err != nil {
		return Store{}, err
	}
	if dedup == layout.DedupHardlink && copyLinks {
		return Store{}, fmt.Errorf("dedup = %q links files across layers, but hardlinks = %q copies every hard link across directories (CVMFS keeps hard links only within one): choose one",
			layout.DedupHardlink, recipe.HardlinksCopyAcrossDirs)
	}
	repo, err := CVMFSRepo(dir, settings.CVMFSRepo)
	if err != nil {
		return Store{}, err
	}
	s := Store{
		Dir: dir,
		Hooks: hooks.Set{Before: settings.Before, After: settings.After, OnFailure: settings.OnFailure,
			Values: hooks.Values{Store: dir, Repo: repo}, Dir: hookDir},
		Options:                 layout.Options{CatalogMarkers: settings.CVMFSCatalogs, Driver: driver, Create: true, Dedup: dedup},
		CopyHardlinksAcrossDirs: copyLinks,
	}
	if err := s.Hooks.Validate(); err != nil {
		return Store{}, err
	}
	return s, nil
}

// CVMFSRepo is the {repo} of the hooks of the store at dir: the configured one (cvmfs-repo), else
// the directory below /cvmfs/ that holds the store. Both given and different is an error: the
// transaction would open one repository while the store is written in another.
func CVMFSRepo(dir, configured string) (string, error) {
	inRepo := hooks.RepoFromStore(dir)
	switch {
	case configured == "":
		return inRepo, nil
	case inRepo != "" && inRepo != configured:
		return "", fmt.Errorf("the store %s is in CVMFS repository %s, not in %s (cvmfs-repo)", dir, inRepo, configured)
	}
	return configured, nil
}

// ExtrasAction is what a run with a recipe does with the names the store holds that the recipe
// no longer lists.
type ExtrasAction int

const (
	NoExtras       ExtrasAction = iota // the store holds only what the recipe lists
	ReportExtras                       // without --prune: listed, kept
	RemoveExtras                       // --prune after a run in which every image succeeded
	KeepForFailure                     // --prune, but an image failed: kept and said why
)

// Extras decides about extras. It prunes only after a run in which every image succeeded: an
// image that failed (a registry down) must not lose its published version.
func Extras(extras []string, prune bool, failed int) ExtrasAction {
	switch {
	case len(extras) == 0:
		return NoExtras
	case !prune:
		return ReportExtras
	case failed > 0:
		return KeepForFailure
	}
	return RemoveExtras
}
