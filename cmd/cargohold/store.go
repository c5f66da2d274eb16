package main

import "github.com/cargohold/cargohold/recipe"

// expandStore expands the platform placeholders of a --store ("/srv/images/{arch}" is
// /srv/images/amd64 on this host, or the store of --platform), in place.
func expandStore(store *string, platform string) error {
	dir, err := recipe.StorePath(*store, platform)
	if err != nil {
		return usageError(err)
	}
	*store = dir
	return nil
}
