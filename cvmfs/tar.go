package cvmfs

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// ingestBase is the directory of the repository that Ingest extracts the tar of a store at rel
// into: the first directory of rel (ingest takes paths below the root oddly, and would give a missing
// base an owner of -1; the tar holds the base itself, as "./").
func ingestBase(rel string) string {
	base, _, _ := strings.Cut(rel, "/")
	return base
}

// ingestTar writes what Ingest gets, named relative to ingestBase(rel): the directories from the base
// down to the store (those above the store 0755 root:root, the store's own as in the shadow), the
// entries of identity (the store's marker for a new store, see layout.Changes), then each of dirs
// (relative to the shadow at shadow) with everything in it. A hard link becomes a link to the first
// name of its file (CVMFS makes each name a file of its own either way); xattrs are left out, ingest
// drops them.
func ingestTar(w io.Writer, shadow, rel string, identity, dirs []string) error {
	tw := tar.NewWriter(w)
	t := &tarWalk{tw: tw, shadow: shadow, rel: rel, base: ingestBase(rel), first: map[nodeID]string{}}
	if err := t.ancestors(dirs); err != nil {
		return err
	}
	for _, p := range identity {
		if err := t.entry(filepath.Join(shadow, p), path.Join(rel, p)); err != nil {
			return err
		}
	}
	for _, d := range dirs {
		if err := filepath.WalkDir(filepath.Join(shadow, d), t.visit); err != nil {
			return err
		}
	}
	return tw.Close()
}

type nodeID struct{ dev, ino uint64 }

type tarWalk struct {
	tw     *tar.Writer
	shadow string
	rel    string            // the store's path in the repository
	base   string            // what the tar's names are relative to (ingestBase)
	first  map[nodeID]string // the first name written of a file with several, in the repository
}

// tarName is the name in the tar of the repository's path p (below or at the base).
func (t *tarWalk) tarName(p string) string {
	if p == t.base {
		return "."
	}
	return strings.TrimPrefix(p, t.base+"/")
}

// ancestors writes the directories from the base down to the store, the store's root and the parents
// of dirs inside the store, each once: ingest would create a missing one with an owner of -1.
func (t *tarWalk) ancestors(dirs []string) error {
	written := map[string]bool{}
	var above []string
	for p := path.Dir(t.rel); p != "."; p = path.Dir(p) {
		above = append([]string{p}, above...)
	}
	for _, p := range above {
		hdr := &tar.Header{Typeflag: tar.TypeDir, Name: t.tarName(p) + "/", Mode: 0o755, ModTime: time.Now().Truncate(time.Second)}
		if err := t.tw.WriteHeader(hdr); err != nil {
			return err
		}
		written[p] = true
	}
	for _, d := range dirs {
		var chain []string
		for p := path.Dir(d); ; p = path.Dir(p) {
			chain = append([]string{p}, chain...)
			if p == "." {
				break
			}
		}
		for _, p := range chain {
			name := path.Join(t.rel, p)
			if written[name] {
				continue
			}
			written[name] = true
			if err := t.entry(filepath.Join(t.shadow, p), name); err != nil {
				return err
			}
		}
	}
	return nil
}

func (t *tarWalk) visit(p string, _ fs.DirEntry, err error) error {
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(t.shadow, p)
	if err != nil {
		return err
	}
	return t.entry(p, path.Join(t.rel, filepath.ToSlash(rel)))
}

// entry writes the file at p as the repository's path name.
func (t *tarWalk) entry(p, name string) error {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: p, Err: err}
	}
	hdr := &tar.Header{
		Name:    t.tarName(name),
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Unix()),
	}
	id := nodeID{uint64(st.Dev), st.Ino}
	if target, ok := t.first[id]; ok && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		hdr.Typeflag, hdr.Linkname = tar.TypeLink, t.tarName(target)
		return t.writeHeader(hdr)
	}
	if st.Nlink > 1 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.first[id] = name
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		hdr.Typeflag, hdr.Name = tar.TypeDir, hdr.Name+"/"
	case unix.S_IFREG:
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
	case unix.S_IFLNK:
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		return fmt.Errorf("%s: a socket cannot be published", p)
	}
	if err := t.writeHeader(hdr); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeReg {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	n, err := io.Copy(t.tw, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != st.Size {
		err = fmt.Errorf("%s changed while it was read", p)
	}
	return err
}

// writeHeader writes hdr. Nanoseconds need PAX (a Writer given no format rounds mtimes to seconds);
// but a PAX path is read as UTF-8 (libarchive converts it), so a name or link target too long for the
// header's own field that is not UTF-8 goes as GNU, whose long names are bytes, with its mtime in whole
// seconds (what CVMFS keeps unless CVMFS_ENABLE_MTIME_NS is set).
func (t *tarWalk) writeHeader(hdr *tar.Header) error {
	switch {
	case longNotUTF8(hdr.Name) || longNotUTF8(hdr.Linkname):
		hdr.Format, hdr.ModTime = tar.FormatGNU, hdr.ModTime.Truncate(time.Second)
	case hdr.ModTime.Nanosecond() != 0:
		hdr.Format = tar.FormatPAX
	}
	if err := t.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("%s: %w", hdr.Name, err)
	}
	return nil
}

// longNotUTF8 says whether s is too long for a ustar name field (100 bytes) and not UTF-8.
func longNotUTF8(s string) bool { return len(s) > 100 && !utf8.ValidString(s) }
