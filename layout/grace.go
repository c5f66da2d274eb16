package layout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// DefaultGrace is gc's grace period when none is given: how long a superseded image, and a layer no
// image uses, are kept for the containers that nodes may still run from them.
const DefaultGrace = 24 * time.Hour

// graceJSON records the grace period the last gc used ({"grace": "48h0m0s"}), so that readers (ls,
// inspect) say when a superseded image may go without being told gc's --grace again.
const graceJSON = privateDir + "/gc.json"

type graceRecord struct {
	Grace string `json:"grace"` // a time.Duration's String
}

// recordGrace writes graceJSON (atomically, like every record) unless it already says grace.
func (s *Store) recordGrace(grace time.Duration) error {
	if recorded, ok, err := readGrace(s.root.FS()); err == nil && ok && recorded == grace {
		return nil
	}
	data, err := json.Marshal(graceRecord{Grace: grace.String()})
	if err != nil {
		return err
	}
	return s.writeFileAtomic(graceJSON, data)
}

// readGrace is the grace period recorded in the store fsys, and whether one is.
func readGrace(fsys fs.FS) (time.Duration, bool, error) {
	data, err := fs.ReadFile(fsys, graceJSON)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	} else if err != nil {
		return 0, false, err
	}
	var r graceRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return 0, false, err
	}
	grace, err := time.ParseDuration(r.Grace)
	if err != nil || grace < 0 {
		return 0, false, fmt.Errorf("grace %q is not a duration", r.Grace)
	}
	return grace, true, nil
}

// Grace is the grace period that says when gc may remove a superseded image: given (a reader's
// --grace) wins; else the one the store's last gc used; else DefaultGrace.
func (s *Snapshot) Grace(given *time.Duration) (time.Duration, error) {
	if given != nil {
		return *given, nil
	}
	grace, ok, err := readGrace(os.DirFS(s.dir))
	switch {
	case err != nil:
		return 0, fmt.Errorf("%s: %w (delete it: the next gc writes it again)", filepath.Join(s.dir, graceJSON), err)
	case !ok:
		return DefaultGrace, nil
	}
	return grace, nil
}

// GCAfter is when a gc with grace may remove the image: grace after it was superseded; nil for an
// image that is not superseded (gc keeps it).
func (info ImageInfo) GCAfter(grace time.Duration) *time.Time {
	if info.Superseded == nil {
		return nil
	}
	after := info.Superseded.Add(grace)
	return &after
}

// Infos is Info of every image (a file each), in the snapshot's order; it stops when ctx ends (the
// error is ctx's cause).
func (s *Snapshot) Infos(ctx context.Context) ([]ImageInfo, error) {
	infos := []ImageInfo{}
	for _, img := range s.Images {
		if err := context.Cause(ctx); err != nil {
			return nil, err
		}
		info, err := s.Info(img)
		if err != nil {
			return nil, err
		}
		infos = append(infos, info)
	}
	return infos, nil
}
