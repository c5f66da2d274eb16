package cvmfs

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/cargohold/cargohold/layout"
	"go.podman.io/storage/pkg/system"
	"golang.org/x/sys/unix"
)

// ErrXattrsDropped is wrapped by the error for an image whose files carry extended attributes that the
// repository would drop (its CVMFS_INCLUDE_XATTRS is not true).
var ErrXattrsDropped = errors.New("the repository drops extended attributes")

// ignoredXattr says whether an attribute is none of the image's: overlayfs's own (an opaque marker
// that cargohold made redundant with whiteouts, see unpack.HideLower) is not brought into CVMFS, whose
// transactions cannot set it on kernels before 6.7, and SELinux labels are the host's.
func ignoredXattr(name string) bool {
	return strings.HasPrefix(name, "trusted.overlay.") || name == "security.selinux"
}

// checkXattrs refuses, if the repository drops extended attributes, a store (at dir) holding an image
// with a new layer (isNew) whose files carry any: without it file capabilities would vanish silently.
func (p *Publication) checkXattrs(dir string, isNew func(id string) bool) error {
	if p.Repo.IncludeXattrs {
		return nil
	}
	snap, err := layout.Read(dir)
	if err != nil {
		return err
	}
	walked := map[string]bool{} // a layer several images share is walked once
	for _, img := range snap.Images {
		info, err := snap.Info(img)
		if err != nil {
			return err
		}
		for _, l := range info.Layers {
			if !isNew(l.ID) || walked[l.ID] {
				continue
			}
			walked[l.ID] = true
			file, attr, err := firstXattr(l.Dir)
			if err != nil {
				return err
			}
			if attr != "" {
				return fmt.Errorf("%w: image %s: layer %s: %s has the extended attribute %s, and repository %s drops them all "+
					"(CVMFS_INCLUDE_XATTRS is not true in %s): add CVMFS_INCLUDE_XATTRS=true there and run again; nothing was published",
					ErrXattrsDropped, strings.Join(img.Names, ","), l.ID, file, attr, p.Repo.Name, p.Repo.ConfigFile)
			}
		}
	}
	return nil
}

// firstXattr returns the first file below root (relative) that carries an attribute of the image's,
// and the attribute; "" if none does.
func firstXattr(root string) (file, attr string, err error) {
	stop := errors.New("found")
	err = filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		names, err := imageXattrs(p)
		if err != nil {
			return err
		}
		if len(names) > 0 {
			file, attr = p, names[0]
			return stop
		}
		return nil
	})
	if errors.Is(err, stop) {
		rel, _ := filepath.Rel(root, file)
		return rel, attr, nil
	}
	return "", "", err
}

// imageXattrs lists the attributes of the file at p (not followed) that belong to the image.
func imageXattrs(p string) ([]string, error) {
	names, err := system.Llistxattr(p)
	if errors.Is(err, unix.ENOTSUP) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing the extended attributes of %s: %w", p, err)
	}
	var own []string
	for _, n := range names {
		if !ignoredXattr(n) {
			own = append(own, n)
		}
	}
	return own, nil
}
