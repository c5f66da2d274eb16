package layout

import (
	"fmt"

	"go.podman.io/storage/drivers/copy"
)

// copyParentTree fills a staged vfs layer with its parent's whole tree, as the vfs driver's Create
// does (same copy function: contents, owners, modes, times, xattrs, hard links within the tree), so
// that applying the layer's own changes on top gives the layer's tree.
func (s *Store) copyParentTree(parent, dst string) error {
	s.mu.Lock()
	recorded := s.layerIndex(parent) >= 0
	s.mu.Unlock()
	if !recorded {
		return fmt.Errorf("staging a vfs layer on parent %s: the parent is not committed yet", parent)
	}
	src := s.path(s.paths.layerDir(parent))
	if err := copy.DirCopy(src, dst, copy.Content, true); err != nil {
		return fmt.Errorf("copying the tree of parent layer %s into a new vfs layer: %w", parent, err)
	}
	return nil
}
