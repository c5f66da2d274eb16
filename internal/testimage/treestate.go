package testimage

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// FileState is what a run that must leave a tree alone may not change about one path.
type FileState struct {
	Mode     fs.FileMode
	UID, GID uint32
	MTime    time.Time
	Sum      [32]byte // content of a regular file
	Target   string   // of a symlink
}

// TreeState records every path under root (root included) by its path relative to root's parent,
// so that a path created beside root (or root itself, where it did not exist) shows too.
func TreeState(root string) (map[string]FileState, error) {
	state := map[string]FileState{}
	top := filepath.Dir(root)
	err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		s := FileState{Mode: fi.Mode(), UID: st.Uid, GID: st.Gid, MTime: fi.ModTime()}
		switch {
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s.Sum = sha256.Sum256(data)
		case fi.Mode()&fs.ModeSymlink != 0:
			if s.Target, err = os.Readlink(p); err != nil {
				return err
			}
		}
		rel, _ := filepath.Rel(top, p)
		state[rel] = s
		return nil
	})
	return state, err
}

// DiffTrees lists, sorted, what changed between two TreeStates: paths removed, created or changed.
func DiffTrees(before, after map[string]FileState) []string {
	var diffs []string
	for p, b := range before {
		if a, ok := after[p]; !ok {
			diffs = append(diffs, p+": removed")
		} else if a != b {
			diffs = append(diffs, fmt.Sprintf("%s: %+v -> %+v", p, b, a))
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			diffs = append(diffs, p+": created")
		}
	}
	slices.Sort(diffs)
	return diffs
}
