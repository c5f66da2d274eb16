package layout

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// A store's identity. cargohold runs as root, so it writes only directories it made itself: a path
// that does not exist or an empty directory (a new store, Options.Create), or a directory that carries
// cargohold's marker. Anything else, a typo'd path, a home directory, Podman's own graphroot, is
// refused before anything is written, so a mistake on the command line never changes a byte there.

// markerName is the store's marker: cargohold's format version and the store's driver. Stores written
// before the marker existed are recognised by their private dir; the next write adds the marker.
const markerName = privateDir + "/store.json"

// formatVersion is the version of the store format this binary writes: the marker, cargohold's own
// files under .cargohold/ and how it uses Podman's files. A newer one is refused for writing.
const formatVersion = 1

// marker is the content of markerName.
type marker struct {
	Format int    `json:"format"`
	Driver Driver `json:"driver"`
}

var (
	// ErrNotStore is wrapped by the error for a path that is not a cargohold store (and, for writing,
	// not a place where one may be created). The error's text says what was found there.
	ErrNotStore = errors.New("not a cargohold store")
	// ErrNewerFormat is wrapped by the error of opening for writing a store written by a newer cargohold.
	ErrNewerFormat = errors.New("the store was written by a newer cargohold")
	// ErrNotPrivileged is wrapped by the error of creating (publishing into) a store without the
	// privileges the writer needs to reproduce an image's files exactly.
	ErrNotPrivileged = errors.New("missing privileges to write a store")
)

// kind is what a path holds, as far as writing a store there is concerned.
type kind int

const (
	kindStore    kind = iota // a cargohold store (marker, or an earlier version's .cargohold/)
	kindMissing              // nothing: a new store may be created (with Options.Create)
	kindEmptyDir             // an empty directory: likewise
	kindForeign              // anything else: never written
)

// found is what classify saw at a path.
type found struct {
	kind   kind
	marker *marker // nil for a store written before markers
	why    error   // for every kind but kindStore: the error to give, wrapping ErrNotStore
}

// emptyDirNames may be in a directory that counts as empty: a fresh filesystem's lost+found, and the
// marker that makes the store a nested catalog in CVMFS.
var emptyDirNames = map[string]bool{"lost+found": true, catalogMarkerName: true}

// classify looks at dir without changing anything.
func classify(dir string) (found, error) {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return found{kind: kindMissing, why: notStore("%s does not exist", dir)}, nil
	} else if err != nil {
		return found{}, err
	}
	if !fi.IsDir() {
		return foreign("%s is not a directory", dir), nil
	}
	if pfi, err := os.Lstat(filepath.Join(dir, privateDir)); err == nil && pfi.IsDir() {
		m, err := readMarker(dir)
		return found{kind: kindStore, marker: m}, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return found{}, err
	}
	entries = slices.DeleteFunc(entries, func(e fs.DirEntry) bool { return emptyDirNames[e.Name()] })
	if len(entries) == 0 {
		return found{kind: kindEmptyDir, why: notStore("%s is an empty directory, not a cargohold store (publish creates one there)", dir)}, nil
	}
	has := func(name string) bool { _, err := os.Lstat(filepath.Join(dir, name)); return err == nil }
	switch {
	case has("libpod"):
		return foreign("%s is Podman's own storage (libpod/ present); give a new directory", dir), nil
	case has(pathsFor(Overlay).layersDir) || has(pathsFor(VFS).layersDir):
		return foreign("%s is a containers-storage store not made by cargohold; give a new directory", dir), nil
	}
	return foreign("%s is a non-empty directory that is not a cargohold store; give a new or empty directory", dir), nil
}

func foreign(format string, args ...any) found {
	return found{kind: kindForeign, why: notStore(format, args...)}
}

// notStoreError says what was found at a path that is not a cargohold store; it is an ErrNotStore.
type notStoreError struct{ msg string }

func notStore(format string, args ...any) error { return &notStoreError{fmt.Sprintf(format, args...)} }
func (e *notStoreError) Error() string          { return e.msg }
func (e *notStoreError) Unwrap() error          { return ErrNotStore }

// readMarker reads the marker of the store at dir; nil for a store written before markers.
func readMarker(dir string) (*marker, error) {
	data, err := os.ReadFile(filepath.Join(dir, markerName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var m marker
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s is not valid: %w", filepath.Join(dir, markerName), err)
	}
	if m.Format < 1 {
		return nil, fmt.Errorf("%s has no format version", filepath.Join(dir, markerName))
	}
	if _, err := ParseDriver(string(m.Driver)); err != nil && m.Format <= formatVersion {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, markerName), err)
	}
	return &m, nil
}

// newer is the error for a marker this binary cannot write under.
func (m *marker) newer(dir string) error {
	if m == nil || m.Format <= formatVersion {
		return nil
	}
	return fmt.Errorf("%w: %s has store format %d, this cargohold writes format %d; use a newer cargohold",
		ErrNewerFormat, dir, m.Format, formatVersion)
}

// Identify returns the driver of the cargohold store at dir, or an error wrapping ErrNotStore. It
// writes nothing. A store written before markers that holds no records yet is an overlay store, as
// opening it without Options.Driver would make it.
func Identify(dir string) (Driver, error) {
	abs, err := ResolveDir(dir)
	if err != nil {
		return "", err
	}
	f, err := classify(abs)
	if err != nil {
		return "", err
	}
	if f.kind != kindStore {
		return "", f.why
	}
	d, err := recordedDriver(os.DirFS(abs), abs, f.marker)
	if d == "" && err == nil {
		d = Overlay
	}
	return d, err
}

// recordedDriver is the driver of the store dir (read through fsys): its marker's, else the one its
// records have; "" for a store written before markers that holds no records yet.
func recordedDriver(fsys fs.FS, dir string, m *marker) (Driver, error) {
	if m != nil {
		return m.Driver, nil
	}
	d, err := DetectDriver(fsys)
	if err != nil {
		return "", fmt.Errorf("%s: %w", dir, err)
	}
	return d, nil
}

// requiredCaps are what the writer uses as root: chown to the image's owners (CAP_CHOWN), device
// nodes and overlay whiteouts (CAP_MKNOD), trusted.* xattrs such as overlay's opaque marker
// (CAP_SYS_ADMIN), file capabilities (CAP_SETFCAP), modes and times of files it gave away
// (CAP_FOWNER), setgid bits of other groups (CAP_FSETID), and reading and writing inside the image's
// own dirs whatever their modes (CAP_DAC_OVERRIDE).
var requiredCaps = []struct {
	bit  int
	name string
}{
	{unix.CAP_CHOWN, "CAP_CHOWN"},
	{unix.CAP_DAC_OVERRIDE, "CAP_DAC_OVERRIDE"},
	{unix.CAP_FOWNER, "CAP_FOWNER"},
	{unix.CAP_FSETID, "CAP_FSETID"},
	{unix.CAP_MKNOD, "CAP_MKNOD"},
	{unix.CAP_SETFCAP, "CAP_SETFCAP"},
	{unix.CAP_SYS_ADMIN, "CAP_SYS_ADMIN"},
}

// checkPrivileges returns an ErrNotPrivileged error naming the capabilities the process lacks.
func checkPrivileges() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("reading this process's capabilities: %w", err)
	}
	var missing []string
	for _, c := range requiredCaps {
		if data[c.bit/32].Effective&(1<<(c.bit%32)) == 0 {
			missing = append(missing, c.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: publishing reproduces every image's owners, device nodes and xattrs, which needs root (missing %s); run it as root",
			ErrNotPrivileged, strings.Join(missing, ", "))
	}
	uidMap, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return fmt.Errorf("reading this process's user namespace: %w", err)
	}
	if !hostUIDMap(string(uidMap)) {
		// unshare -r, rootless Podman, a rootless container: every capability, but only over what
		// the namespace owns; the kernel refuses device nodes, trusted.* xattrs and owners outside
		// the ID map.
		return fmt.Errorf("%w: publishing reproduces every image's owners, device nodes and xattrs, which needs root on the host "+
			"(missing CAP_CHOWN, CAP_MKNOD and CAP_SYS_ADMIN in the host's user namespace: this process is root only inside a user "+
			"namespace, uid_map %q, as under unshare -r, rootless Podman or a rootless container); run it as root on the host",
			ErrNotPrivileged, strings.Join(strings.Fields(string(uidMap)), " "))
	}
	return nil
}

// hostUIDMap says whether a /proc/PID/uid_map is the host's own (the initial user namespace):
// every ID maps to itself.
func hostUIDMap(uidMap string) bool {
	return strings.Join(strings.Fields(uidMap), " ") == "0 0 4294967295"
}

// checkWritable says, once and clearly, when dir (or, for a new store, its nearest existing ancestor)
// cannot be written, such as a read-only filesystem.
func checkWritable(dir string) error {
	p := dir
	for {
		err := unix.Access(p, unix.W_OK)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.ENOENT) && filepath.Dir(p) != p:
			p = filepath.Dir(p)
			continue
		case errors.Is(err, unix.EROFS):
			return fmt.Errorf("%s is on a read-only file system; the store cannot be written", p)
		}
		return fmt.Errorf("%s cannot be written: %w", p, err)
	}
}

// creation is what opening a new store found at its path, so that Close can take the store away
// again when nothing was published into it (see Store.discard).
type creation struct {
	dir  bool            // the store dir did not exist: open created it (its parents stay)
	kept map[string]bool // what an existing empty dir held (lost+found, .cvmfscatalog)
	mode fs.FileMode     // an existing dir's mode (open makes the store root a+rx)
}

// prepare checks that dir may be opened for writing with opts and creates it (with its parents) when
// it is a new store. Nothing is written when it returns an error. For a new store it returns what was
// there (nil for an existing store).
func prepare(dir string, opts Options) (*creation, error) {
	f, err := classify(dir)
	if err != nil {
		return nil, err
	}
	switch {
	case f.kind == kindStore:
		if err := f.marker.newer(dir); err != nil {
			return nil, err
		}
		if f.marker != nil && opts.Driver != "" && opts.Driver != f.marker.Driver {
			return nil, wrongDriver(dir, f.marker.Driver, opts.Driver)
		}
	case f.kind == kindForeign || !opts.Create:
		return nil, f.why
	}
	if opts.Create {
		if err := checkPrivileges(); err != nil {
			return nil, err
		}
	}
	if err := checkWritable(dir); err != nil {
		return nil, err
	}
	switch f.kind {
	case kindMissing:
		if err := os.MkdirAll(dir, dirMode); err != nil {
			return nil, fmt.Errorf("creating the store directory: %w", err)
		}
		if err := os.Chmod(dir, dirMode); err != nil { // the umask may have narrowed it
			return nil, err
		}
		return &creation{dir: true}, nil
	case kindEmptyDir:
		return emptyDirCreation(dir)
	}
	return nil, nil
}

// emptyDirCreation records what an empty dir that becomes a store holds (see creation).
func emptyDirCreation(dir string) (*creation, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	c := &creation{kept: map[string]bool{}, mode: fi.Mode().Perm()}
	for _, e := range entries {
		c.kept[e.Name()] = true
	}
	return c, nil
}

// writeMarker records the store's identity, for a new store and one written before markers.
func (s *Store) writeMarker() error {
	data, err := json.Marshal(marker{Format: formatVersion, Driver: s.paths.driver})
	if err != nil {
		return err
	}
	return s.writeFileAtomic(markerName, data)
}
