// Package layout is the containers-storage store that cargohold publishes into (not an OCI image
// layout): a read-only additional image store, in the overlay or the vfs driver's on-disk format,
// that an unmodified Podman lists and runs. It owns the format end to end: the file names inside a
// store, the layer and image records and their big data, crash recovery, removal and gc, and the
// store's identity (a marker that makes cargohold write only stores it made). Callers hand it what an
// image is (Image, staged layers) and never name a file inside the store. Format references:
// docs/STORE-FORMAT.md and, field by field, go.podman.io/storage's layers.go, images.go and
// drivers/overlay/overlay.go, whose types this package writes.
package layout

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cargohold/cargohold/internal/faultpoint"
	"go.podman.io/storage"
	"go.podman.io/storage/pkg/lockfile"
	"golang.org/x/sys/unix"
)

// Paths inside the store, relative to its root, that do not depend on the driver (see storePaths).
const (
	privateDir     = ".cargohold"         // cargohold's own: Podman never looks here
	stagingDir     = ".cargohold/staging" // layers being unpacked; removed by Open after a crash
	writerLockName = ".cargohold/lock"

	layersLock = "layers.lock" // inside the layers dir
	imagesLock = "images.lock" // inside the images dir
)

// Store is a store opened for writing by one cargohold process. Its methods are safe for
// concurrent use; commits and image updates are serialized.
type Store struct {
	dir   string     // absolute path, symlinks resolved (ResolveDir)
	root  *os.Root   // every write goes through it, so nothing outside the store is ever written
	paths storePaths // where the driver's files are

	writer *lockfile.LockFile // held from Open to Close

	// Podman's lock files, used to record a fresh last-write token after each metadata change.
	layersLock, imagesLock *lockfile.LockFile
	// Open directory handles that the lock files are addressed through (see podmanLockFile).
	lockDirs []*os.File

	opts Options // set by OpenWithOptions

	// CommitLayer's group commit: requests wait in pending; one group is committed at a time.
	committing sync.Mutex
	pendingMu  sync.Mutex
	pending    []*commitRequest
	// PutImage's group commit: images wait in pendingImages (under pendingMu); one group is
	// recorded at a time.
	recording     sync.Mutex
	pendingImages []*imageRequest

	mu     sync.Mutex
	layers []storage.Layer // as in layers.json
	images imageSet        // as in images.json; replaced only by setImages
	// imagesJSON is images marshalled, nil until needed (see marshalledImages); set with images.
	imagesJSON []byte
	closed     bool

	cleaned []Leftover // what Open removed (Cleaned)

	// Shared file data (dedup.go, fileindex.go): how, found on first use, and the file index.
	sharingOnce  sync.Once
	sharingKnown atomic.Bool // sharing and sharingErr are set
	sharing      Sharing
	sharingErr   error
	filesMu      sync.Mutex
	files        *fileIndex // nil until a publish needs it, and again after gc
	rootDir      *os.File   // the store root, for openat2 beneath it (the file index)

	now func() time.Time // the clock of superseded marks (tests set their own); nil: time.Now

	// created is set while the store is one this open created (a new path or an empty dir) and
	// another run has not made it a store meanwhile: Close removes it again if no image is recorded.
	created *creation
}

// clock is the time a change made now is recorded with.
func (s *Store) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

// open checks that dir may be written (see prepare: a cargohold store, or with opts.Create a new one),
// takes cargohold's writer lock (blocking until another cargohold run on the same store finishes),
// creates what the store lacks, loads the metadata and removes what a crashed run left behind (see
// Leftover). The store keeps the driver it has; a new one gets opts.Driver (default overlay). A wait
// for the lock ends with ctx (its cause is the error).
func open(ctx context.Context, dir string, opts Options) (*Store, error) {
	abs, err := ResolveDir(dir)
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		s, err := openOnce(ctx, abs, opts)
		if errors.Is(err, errReplaced) && attempt < 3 {
			continue // another run took away the new store it created while this one waited: start again
		}
		return s, err
	}
}

// errReplaced is openOnce's error when the store dir is no longer the one it opened once it holds the
// writer lock: a run that created it and published nothing removed it meanwhile (Close).
var errReplaced = errors.New("the store directory was removed while this run waited for its writer lock")

// openOnce is one attempt of open, at the absolute path abs.
func openOnce(ctx context.Context, abs string, opts Options) (_ *Store, err error) {
	created, err := prepare(abs, opts)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("opening store: %w", err)
	}
	s := &Store{dir: abs, root: root, opts: opts, created: created}
	defer func() {
		if err != nil {
			_ = s.closeUnused() // the open failed: its error is the one to report
		}
	}()
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	if err := s.stillAtPath(); err != nil {
		s.created = nil // what is at the path now is not what this open created
		return nil, err
	}
	faultpoint.Hit("store-locked")
	if err := s.setUp(); err != nil {
		return nil, err
	}
	images, layers, err := readRecords(s.root.FS(), s.paths)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.dir, err)
	}
	s.layers = layers
	s.setImages(images, nil)
	if err := s.removeLeftovers(); err != nil {
		return nil, fmt.Errorf("removing leftovers of an earlier run: %w", err)
	}
	faultpoint.Hit("leftovers-removed")
	return s, nil
}

// lock takes the writer lock (a wait ends with ctx) and makes the store root readable.
func (s *Store) lock(ctx context.Context) error {
	if err := s.mkdir(privateDir); err != nil {
		return err
	}
	var err error
	if s.writer, err = s.openWriterLock(); err != nil {
		return err
	}
	if err := s.lockWriter(ctx, s.opts.Lock); err != nil {
		s.writer = nil
		return fmt.Errorf("taking the writer lock %s: %w", s.path(writerLockName), err)
	}
	// Readers are other users: a store root they cannot enter shows them nothing. This adds a+rx to
	// the store's own root (prepare refused every other dir) and takes nothing away. Only now: a run
	// that held the lock may have given a new store's dir back its mode when it took the store away.
	if fi, err := s.root.Stat("."); err != nil {
		return err
	} else if fi.Mode().Perm()&0o555 != 0o555 {
		if err := s.chmod(".", fi.Mode().Perm()|0o555); err != nil {
			return fmt.Errorf("making the store readable by other users: %w", err)
		}
	}
	return nil
}

// setUp decides the store's driver and creates what it lacks (marker, skeleton, lock files, empty
// records). The caller holds the writer lock.
func (s *Store) setUp() error {
	m, err := readMarker(s.dir) // again: another run may have created the store meanwhile
	if err != nil {
		return err
	}
	if m != nil {
		s.created = nil // that run's store, or one published before: never taken away by this run
	}
	if err := m.newer(s.dir); err != nil {
		return err
	}
	driver, err := s.driverFor(m, s.opts.Driver)
	if err != nil {
		return err
	}
	s.paths = pathsFor(driver)
	if m == nil {
		// The lock file's package makes its dir 0700 when it finds it missing (another run's discard
		// raced this one's wait for the lock); readers of the marker are other users.
		if err := s.chmod(privateDir, dirMode); err != nil {
			return err
		}
		if err := s.writeMarker(); err != nil {
			return err
		}
	}
	for _, d := range append(s.paths.skeleton(), stagingDir) {
		if err := s.mkdir(d); err != nil {
			return fmt.Errorf("creating store skeleton: %w", err)
		}
	}
	if s.layersLock, err = s.podmanLockFile(s.paths.layersDir, layersLock); err != nil {
		return err
	}
	if s.imagesLock, err = s.podmanLockFile(s.paths.imagesDir, imagesLock); err != nil {
		return err
	}
	for _, f := range []string{s.paths.layersJSON, s.paths.imagesJSON} {
		if _, err := s.root.Lstat(f); errors.Is(err, fs.ErrNotExist) {
			if err := s.writeFileAtomic(f, []byte("[]")); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
	}
	return nil
}

// Close releases the writer lock. Staged layers not yet committed are removed by the next
// OpenWithOptions. A store that this open created and into which no image was recorded (a first
// publish that failed) is removed again (see DiscardedOnClose), so that nobody registers an empty
// store with Podman.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if len(s.images.list) > 0 {
		s.created = nil
	}
	return s.closeUnused()
}

// DiscardedOnClose reports whether Close will remove the store again: this open created it and it
// records no image.
func (s *Store) DiscardedOnClose() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.created != nil && len(s.images.list) == 0
}

// closeUnused takes away the store this open created (s.created) and releases the lock.
func (s *Store) closeUnused() error {
	var err error
	if s.created != nil && s.writer != nil {
		err = s.discard()
	}
	return errors.Join(err, s.release())
}

// discard removes what this open created in a store that holds no image: the dirs the store format
// puts at its top (nothing else: not what an empty dir held before, lost+found, .cvmfscatalog, nor
// anything somebody else put there meanwhile), cargohold's private dir last (until it goes, the dir is a
// store to the next run, never a foreign dir); it gives an existing dir back its mode, and removes a
// store dir this open created if it is empty then (its parents stay: removing them could take away
// another run's new store). The caller holds the writer lock.
func (s *Store) discard() error {
	for _, name := range topLevelDirs() {
		if s.created.kept[name] {
			continue
		}
		if err := s.root.RemoveAll(name); err != nil {
			return fmt.Errorf("removing the new store %s, into which nothing was published: %w", s.dir, err)
		}
	}
	if err := s.root.RemoveAll(privateDir); err != nil {
		return fmt.Errorf("removing the new store %s, into which nothing was published: %w", s.dir, err)
	}
	if !s.created.dir {
		return s.root.Chmod(".", s.created.mode)
	}
	// Another run waiting for the lock may have put its own lock file here already: then it stays.
	if err := os.Remove(s.dir); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("removing the new store %s, into which nothing was published: %w", s.dir, err)
	}
	return nil
}

// topLevelDirs are the dirs a store of either driver has at its top, besides its private dir.
func topLevelDirs() []string {
	var dirs []string
	for _, d := range []Driver{Overlay, VFS} {
		for _, p := range pathsFor(d).skeleton() {
			if top, _, _ := strings.Cut(p, "/"); !slices.Contains(dirs, top) {
				dirs = append(dirs, top)
			}
		}
	}
	return dirs
}

// stillAtPath makes sure the store dir opened is still the one at its path now that the writer lock
// is held (errReplaced if not).
func (s *Store) stillAtPath() error {
	opened, err := s.root.Stat(".")
	if err != nil {
		return err
	}
	if now, err := os.Stat(s.dir); err != nil || !os.SameFile(opened, now) {
		return errReplaced
	}
	return nil
}

func (s *Store) release() error {
	if s.writer != nil {
		unlock(s.writer)
		s.writer = nil
	}
	for _, f := range s.lockDirs {
		_ = f.Close() // directory handles: nothing to flush
	}
	s.lockDirs = nil
	if s.rootDir != nil {
		_ = s.rootDir.Close() // a directory handle: nothing to flush
		s.rootDir = nil
	}
	return s.root.Close()
}

// Dir returns the store's absolute path, as readers know it (Options.ServedAt, if set).
func (s *Store) Dir() string {
	if s.opts.ServedAt != "" {
		return s.opts.ServedAt
	}
	return s.dir
}

// Driver returns the store's driver.
func (s *Store) Driver() Driver { return s.paths.driver }

// driverFor returns the driver to open the store with: the one it has (by its marker m, else by its
// records), else want (default overlay). A store of another driver than want is an ErrWrongDriver.
func (s *Store) driverFor(m *marker, want Driver) (Driver, error) {
	have, err := recordedDriver(s.root.FS(), s.dir, m)
	if err != nil {
		return "", err
	}
	switch {
	case have == "" && want == "":
		return Overlay, nil
	case have == "":
		return ParseDriver(string(want))
	case want != "" && want != have:
		return "", wrongDriver(s.dir, have, want)
	}
	return have, nil
}

// HasLayer reports whether layers.json records the layer (by chain ID).
func (s *Store) HasLayer(id string) bool {
	_, ok := s.Layer(id)
	return ok
}

// Layer returns the layers.json record of a layer (by chain ID).
func (s *Store) Layer(id string) (storage.Layer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := s.layerIndex(id); i >= 0 {
		return copyLayer(s.layers[i]), true
	}
	return storage.Layer{}, false
}

// LayerDiffDir is where a committed layer's files are (overlay/<id>/diff, vfs/dir/<id>; an absolute
// path), for tests and tools that look at the files themselves; ok is false if layers.json does not
// record the layer.
func (s *Store) LayerDiffDir(id string) (dir string, ok bool) {
	if !s.HasLayer(id) {
		return "", false
	}
	return s.path(path.Join(s.paths.layerDir(id), s.paths.diffInLayer())), true
}

// Image returns the images.json record of an image by ID (config digest hex).
func (s *Store) Image(id string) (storage.Image, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := s.images.index(id); i >= 0 {
		return copyImage(s.images.list[i]), true
	}
	return storage.Image{}, false
}

// Images returns all image records, in images.json order.
func (s *Store) Images() []storage.Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	res := make([]storage.Image, len(s.images.list))
	for i, img := range s.images.list {
		res[i] = copyImage(img)
	}
	return res
}

func (s *Store) path(rel string) string { return filepath.Join(s.dir, filepath.FromSlash(rel)) }

func (s *Store) layerIndex(id string) int {
	return slices.IndexFunc(s.layers, func(l storage.Layer) bool { return l.ID == id })
}

// openWriterLock returns cargohold's own lock. It is addressed by its real path, so that two Opens of
// one store inside one process also exclude each other (fcntl locks alone do not: they are per process).
func (s *Store) openWriterLock() (*lockfile.LockFile, error) {
	if err := s.ensureRegularFile(writerLockName); err != nil {
		return nil, err
	}
	real, err := filepath.EvalSymlinks(s.path(writerLockName))
	if err != nil {
		return nil, err
	}
	return lockfile.GetLockFile(real)
}

// podmanLockFile makes sure dir/name exists, is 0644 (a reader that cannot open it sees an empty
// store) and holds a valid last-write token, and returns it for recording writes.
//
// It is addressed through /proc/self/fd/<dir fd>/<name> rather than its path: the lockfile package keeps
// one object per path for the whole process and refuses to hand out a read-only one for a path it once
// opened read-write (and vice versa), so using the real path here would break the storage library
// reading this very store later in the same process (a deep check in builder tests, a "publish
// then check" command). The directory handle also keeps every lock operation inside the store.
func (s *Store) podmanLockFile(dir, name string) (*lockfile.LockFile, error) {
	rel := path.Join(dir, name)
	if err := s.ensureRegularFile(rel); err != nil {
		return nil, err
	}
	d, err := s.root.Open(dir)
	if err != nil {
		return nil, err
	}
	s.lockDirs = append(s.lockDirs, d)
	p := fmt.Sprintf("/proc/self/fd/%d/%s", d.Fd(), name)
	if _, err := os.Stat(p); err != nil { // no procfs: fall back to the plain path
		p = s.path(rel)
	}
	l, err := lockfile.GetLockFile(p)
	if err != nil {
		return nil, fmt.Errorf("opening lock file %s: %w", s.path(rel), err)
	}
	fi, err := s.root.Lstat(rel)
	if err != nil {
		return nil, err
	}
	if fi.Size() == 0 { // new: give it a token as the storage library would on its first write
		if err := recordWrite(l, nil); err != nil {
			return nil, fmt.Errorf("initializing lock file %s: %w", s.path(rel), err)
		}
	}
	return l, nil
}

// ensureRegularFile creates name (0644) if missing, refuses anything but a regular file, and fixes
// its mode to 0644.
func (s *Store) ensureRegularFile(name string) error {
	if fi, err := s.root.Lstat(name); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm() == fileMode {
		// Already right. Not opening it matters: closing any descriptor of a file drops this
		// process's fcntl lock on it, such as another Store's writer lock.
		return nil
	}
	f, err := s.root.OpenFile(name, os.O_RDONLY|os.O_CREATE|unix.O_NOFOLLOW, fileMode)
	if err != nil {
		return fmt.Errorf("creating %s: %w", s.path(name), err)
	}
	defer func() { _ = f.Close() }() // opened read-only, to check and chmod
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", s.path(name))
	}
	if fi.Mode().Perm() != fileMode {
		return f.Chmod(fileMode)
	}
	return nil
}

// recordWrite runs write (if any) holding Podman's lock file for writing, as the storage library does,
// and gives the lock file a fresh last-write token so that long-running readers (Podman service,
// CRI-O) reload. The token is recorded before the write, like the storage library, so a crash after
// the write still invalidates readers' caches, and again after it, so a reader on a filesystem without
// working fcntl locks that loaded the old file under the new token reloads once more. The wait is not
// cancellable: readers hold the lock only while they read, and a metadata change once begun is finished.
func recordWrite(l *lockfile.LockFile, write func() error) error {
	if err := waitLock(context.Background(), l); err != nil {
		return err
	}
	defer unlock(l)
	if _, err := l.RecordWrite(); err != nil {
		return err
	}
	if write == nil {
		return nil
	}
	if err := write(); err != nil {
		return err
	}
	_, err := l.RecordWrite()
	return err
}
