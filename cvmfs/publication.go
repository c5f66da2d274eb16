package cvmfs

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/cargohold/cargohold/layout"
	"golang.org/x/sys/unix"
)

// A Publication publishes one store inside a CVMFS repository. Begin runs before the store is opened
// and says where to write it; the caller opens the store there, publishes its images and closes it;
// Finish then brings the result into the repository, or, if the publish failed, leaves the repository
// as it was. Either way no transaction stays open, and nodes see either the store as it was or the
// store with every image of the run.
//
// An overlay store is written as a shadow (layout.Shadow) on a local disk, outside any transaction,
// so a failed or interrupted run changes nothing in the repository. Finish then ingests the new layer
// dirs, whiteouts included (one revision that no record refers to yet, so nodes do not see it), opens
// a transaction, sets what ingest dropped (xattrs, owners and modes if they differ), writes the
// records and the other files that changed, and publishes (the revision that makes the images
// visible). A vfs store holds no whiteouts: it is written inside one transaction, in place.
type Publication struct {
	Repo   *Repo
	Server Server
	Store  string // absolute, below Repo.Mountpoint
	// StagingRoot is where the shadow goes (a local filesystem with room for the run's new layers,
	// whiteouts and xattrs); "" is $TMPDIR, else /var/tmp.
	StagingRoot string
	Stdout      io.Writer // what Finish says; nil: os.Stdout
	// Warn is told what a run must say loudly: that it aborted a transaction a killed run left
	// open (see Marker); nil: standard error.
	Warn func(msg string)

	driver  layout.Driver // the store's
	rel     string        // Store inside the repository
	staging string        // the shadow's parent dir (overlay)
	held    *os.File      // staging, flocked while this run lives (see removeDeadShadows)
	records [32]byte      // hash of the published records when the run began (overlay)
	before  map[string]bool

	marker   *Marker // written before a transaction is opened, removed by endMarker
	leftOpen bool    // this run's transaction stays open (its abort failed)
}

// New prepares the publish of the store at store (absolute) in repository repo (its server.conf read
// from configRoot, ConfigRoot but in tests). driver is the driver asked for ("": the store's own,
// overlay for a new store).
func New(configRoot, repo, store string, driver layout.Driver) (*Publication, error) {
	r, err := Load(configRoot, repo)
	if err != nil {
		return nil, err
	}
	return newPublication(r, store, driver)
}

func newPublication(r *Repo, store string, driver layout.Driver) (*Publication, error) {
	p := &Publication{Repo: r, Store: filepath.Clean(store), driver: driver}
	var err error
	if p.rel, err = r.Rel(store); err != nil {
		return nil, err
	}
	if p.rel == "." {
		return nil, fmt.Errorf("the store %s is the root of repository %s: give it a directory of its own (e.g. %s/images)", store, r.Name, r.Mountpoint)
	}
	return p, nil
}

// published is the store as nodes see it: read through the repository's client mount.
func (p *Publication) published() string { return filepath.Join(p.Repo.ClientView, p.rel) }

// Shadowed says whether the store is written as a shadow (overlay) rather than in a transaction (vfs).
func (p *Publication) Shadowed() bool { return p.driver == layout.Overlay }

// Begin decides how the store is written and returns the directory to open it at: a fresh shadow of
// the published store (overlay), or the store itself inside a newly opened transaction (vfs). First
// it aborts a transaction that a killed run left open (recoverStale). If it fails, nothing is open
// and Finish must not be called.
func (p *Publication) Begin() (string, error) {
	if err := p.recoverStale(); err != nil {
		return "", err
	}
	if d, err := layout.Identify(p.published()); err == nil {
		if p.driver == "" {
			p.driver = d
		}
	} else if !errors.Is(err, layout.ErrNotStore) {
		return "", err
	}
	if p.driver == "" {
		p.driver = layout.Overlay
	}
	if !p.Shadowed() {
		return p.Store, p.beginTransaction()
	}
	return p.beginShadow()
}

func (p *Publication) beginTransaction() error {
	before := map[string]bool{}
	if snap, err := layout.Read(p.Store); err == nil {
		for _, l := range snap.Layers {
			before[l.ID] = true
		}
	} else if !errors.Is(err, layout.ErrNotStore) {
		return err
	}
	p.before = before
	if err := p.opening("transaction", func() error { return p.Server.Transaction(p.Repo.Name) }); err != nil {
		return errors.Join(err, p.endMarker())
	}
	return nil
}

func (p *Publication) beginShadow() (string, error) {
	root := p.StagingRoot
	if root == "" {
		root = os.Getenv("TMPDIR")
	}
	if root == "" {
		root = "/var/tmp"
	}
	p.removeDeadShadows(root)
	staging, err := os.MkdirTemp(root, p.stagingPrefix())
	if err == nil {
		if p.held, err = holdDir(staging); err != nil {
			_ = os.Remove(staging) // empty; the error is the one to report
		}
	}
	if err != nil {
		return "", fmt.Errorf("making a staging dir for the shadow of %s: %w", p.Store, err)
	}
	p.staging = staging
	if p.records, err = recordsHash(p.published()); err == nil {
		err = layout.Shadow(p.shadow(), p.published())
	}
	if err != nil {
		p.dropStaging() // the error is the one to report
		return "", fmt.Errorf("shadowing %s: %w", p.Store, err)
	}
	return p.shadow(), nil
}

func (p *Publication) stagingPrefix() string { return "cargohold-cvmfs-" + p.Repo.Name + "-" }

// holdDir opens dir and takes an exclusive flock on it, which the kernel releases when this process
// ends, however it ends.
func holdDir(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = f.Close() // read only
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	return f, nil
}

// removeDeadShadows removes the staging dirs of this repository's shadows in root that no run
// holds: those of runs that were killed (SIGKILL, OOM, a power cut), which could not remove them.
// A shadow holds a run's new layers: left there, killed runs would fill the disk.
func (p *Publication) removeDeadShadows(root string) {
	dirs, _ := filepath.Glob(filepath.Join(root, p.stagingPrefix()+"*"))
	for _, d := range dirs {
		f, err := holdDir(d)
		if err != nil {
			continue // a run that lives (or no dir of ours)
		}
		if err := os.RemoveAll(d); err == nil {
			p.warn("removed %s, the shadow of a run that was killed", d)
		}
		_ = f.Close() // read only
	}
}

// dropStaging removes this run's staging dir and lets it go.
func (p *Publication) dropStaging() {
	_ = os.RemoveAll(p.staging)
	if p.held != nil {
		_ = p.held.Close() // read only
		p.held = nil
	}
}

// shadow is where the shadow of the store is written, inside the staging dir.
func (p *Publication) shadow() string { return filepath.Join(p.staging, "store") }

// recordsHash fingerprints the records of the store at dir (none for a new store), to notice
// another writer.
func recordsHash(dir string) ([32]byte, error) {
	h := sha256.New()
	for _, d := range []layout.Driver{layout.Overlay, layout.VFS} {
		for _, f := range layout.RecordFiles(d) {
			data, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return [32]byte{}, err
			}
			fmt.Fprintf(h, "%s %d\n", f, len(data))
			h.Write(data)
		}
	}
	return [32]byte(h.Sum(nil)), nil
}

// Finish ends the run. failed says that the publish failed (an image, the store, a signal): then the
// repository is left as it was (the shadow removed, the transaction aborted). Otherwise the store's
// changes are published. ctx matters only before anything reached the repository: once ingest has
// begun, Finish runs to its end.
func (p *Publication) Finish(ctx context.Context, failed bool) (err error) {
	defer func() { err = errors.Join(err, p.endMarker()) }()
	if !p.Shadowed() {
		return p.finishTransaction(failed)
	}
	defer p.dropStaging() // only ours: a local copy
	if failed {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("stopped before anything reached repository %s (%w)", p.Repo.Name, err)
	}
	return p.bringIn()
}

func (p *Publication) finishTransaction(failed bool) error {
	if failed {
		return p.abort()
	}
	return p.publishOrAbort(p.checkXattrs(p.Store, func(id string) bool { return !p.before[id] }))
}

// publishOrAbort ends the open transaction: published if err (what came before) is nil and the
// publish succeeds, else aborted.
func (p *Publication) publishOrAbort(err error) error {
	if err == nil {
		if err = p.Server.Publish(p.Repo.Name); err == nil {
			return nil
		}
	}
	return errors.Join(err, p.abort())
}

// abort aborts the transaction this run opened; if that fails, the marker stays (endMarker) and
// the next run aborts it.
func (p *Publication) abort() error {
	err := p.Server.Abort(p.Repo.Name)
	p.leftOpen = err != nil
	return err
}

// bringIn publishes the shadow's changes: new layers by ingest, the rest in a transaction.
func (p *Publication) bringIn() error {
	shadow := p.shadow()
	changes, err := layout.ShadowChanges(shadow, p.published())
	if err != nil {
		return err
	}
	if changes.Empty() {
		p.say("nothing changed in %s: no revision published\n", p.Store)
		return nil
	}
	newLayer := map[string]bool{}
	for _, d := range changes.NewLayers {
		newLayer[filepath.Base(d)] = true
	}
	if err := p.checkXattrs(shadow, func(id string) bool { return newLayer[id] }); err != nil {
		return err
	}
	if err := p.unchanged(p.published()); err != nil {
		return err
	}
	if len(changes.NewLayers) > 0 {
		if err := p.ingest(shadow, changes.Identity, changes.NewLayers); err != nil {
			return err
		}
		changes.Write = slices.DeleteFunc(changes.Write, func(w string) bool { return slices.Contains(changes.Identity, w) })
	}
	if err := p.opening("transaction", func() error { return p.Server.Transaction(p.Repo.Name) }); err != nil {
		return fmt.Errorf("%w; the new layers are in the repository, but no record refers to them: the next run replaces them", err)
	}
	err = p.unchanged(p.Store)
	if err == nil {
		err = applyChanges(shadow, p.Store, changes)
	}
	return p.publishOrAbort(err)
}

// unchanged refuses to go on if another writer changed the store's records since Begin.
func (p *Publication) unchanged(dir string) error {
	h, err := recordsHash(dir)
	if err != nil {
		return err
	}
	if h != p.records {
		return fmt.Errorf("the records of %s changed while this run published (another writer?): nothing was published; run again", p.Store)
	}
	return nil
}

// ingest brings the new layer dirs in. Dirs of the same names that a failed run left (ingested, then
// no transaction published their records) are removed first, in a revision of their own (see
// Server.Remove).
func (p *Publication) ingest(shadow string, identity, dirs []string) error {
	var stale []string
	for _, d := range dirs {
		if _, err := os.Lstat(filepath.Join(p.published(), d)); err == nil {
			stale = append(stale, filepath.ToSlash(filepath.Join(p.rel, d)))
		}
	}
	if len(stale) > 0 {
		if err := p.opening("ingest", func() error { return p.Server.Remove(p.Repo.Name, stale) }); err != nil {
			return err
		}
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(ingestTar(pw, shadow, p.rel, identity, dirs)) }()
	err := p.opening("ingest", func() error { return p.Server.Ingest(p.Repo.Name, ingestBase(p.rel), pr) })
	_ = pr.CloseWithError(errors.New("ingest ended")) // the writer stops if ingest stopped reading
	return err
}

func (p *Publication) say(format string, a ...any) {
	w := p.Stdout
	if w == nil {
		w = os.Stdout
	}
	fmt.Fprintf(w, format, a...)
}
