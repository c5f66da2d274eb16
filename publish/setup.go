package publish

import (
	"errors"
	"fmt"

	"github.com/cargohold/cargohold/cvmfs"
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
	if o.CVMFS != nil {
		p.CVMFS = *o.CVMFS
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
		return Store{}, fmt.Errorf("dedup = %q links files across layers, but hardlinks = %q copies every hard link across directories: choose one",
			layout.DedupHardlink, recipe.HardlinksCopyAcrossDirs)
	}
	repo, err := cvmfs.ResolveRepo(dir, settings.CVMFSRepo)
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
	if settings.CVMFS {
		if s.CVMFS, err = cvmfsPublication(dir, repo, driver, s.Hooks); err != nil {
			return Store{}, err
		}
	}
	return s, nil
}

// cvmfsPublication sets up the publish of the store at dir through CVMFS repository repo.
func cvmfsPublication(dir, repo string, driver layout.Driver, h hooks.Set) (*cvmfs.Publication, error) {
	if !h.Empty() {
		return nil, errors.New("cvmfs = true (--cvmfs) runs cvmfs_server itself: leave out before, after and on-failure")
	}
	if repo == "" {
		return nil, fmt.Errorf("cvmfs = true (--cvmfs): the store %s is not below /cvmfs/: name its repository with cvmfs-repo (--cvmfs-repo)", dir)
	}
	return cvmfs.New(cvmfs.ConfigRoot, repo, dir, driver)
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
