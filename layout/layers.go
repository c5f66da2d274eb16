package layout

import (
	"bufio"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cargohold/cargohold/internal/faultpoint"
	"github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/storage"
	"go.podman.io/storage/pkg/archive"
	"go.podman.io/storage/pkg/stringid"
)

// Names inside a layer dir, as drivers/overlay writes them.
const (
	diffName        = "diff"
	linkName        = "link"
	lowerName       = "lower"
	lowerLayersName = "lower-layers"
	emptyName       = "empty"

	tarSplitSuffix = ".tar-split.gz"

	// layerRootMode is the mode of a base layer's root (diff/, or vfs/dir/<id>), the drivers'
	// defaultPerms.
	layerRootMode = 0o555

	// linkLength is the length of the short name in overlay/l/ (drivers/overlay idLength): short
	// enough that 128 lowers fit in one page of mount options.
	linkLength = 26
)

var linkRE = regexp.MustCompile(`^[A-Z2-7]{26}$`)

// ChainIDs returns the storage layer IDs of an image's layers with the given diff IDs (base first):
// each names the layer together with everything below it.
func ChainIDs(diffIDs []digest.Digest) []string {
	ids := make([]string, len(diffIDs))
	parent := ""
	for i, d := range diffIDs {
		ids[i] = ChainID(parent, d)
		parent = ids[i]
	}
	return ids
}

// ChainID returns the storage layer ID of a layer with the given diff ID on top of parent ("" for a base
// layer), as the image library computes it: the diff ID hex for a base layer, otherwise
// hex(sha256(parent + "+" + diffID hex)).
func ChainID(parent string, diffID digest.Digest) string {
	if parent == "" {
		return diffID.Encoded()
	}
	return digest.Canonical.FromString(parent + "+" + diffID.Encoded()).Encoded()
}

// A StagedLayer is a layer being unpacked in a staging dir inside the store (same filesystem), where
// no reader looks. CommitLayer moves it into place; Discard drops it.
//
// Staging dir layout: <stage>/layer/ (becomes overlay/<id>/ with diff/ in it, or vfs/dir/<id>/) and
// <stage>/tar-split.gz (becomes <driver>-layers/<id>.tar-split.gz).
type StagedLayer struct {
	s      *Store
	stage  string // relative to the store root
	parent string // the parent layer ID given to StageLayer

	tsFile *os.File
	tsBuf  *bufio.Writer
	tsGzip *gzip.Writer
	tsErr  error // first error writing the tar-split

	files *LayerFiles // nil when the store shares no file data

	mu          sync.Mutex
	done        bool   // committed or discarded
	committedAs string // the layer ID, once its dir is in place (where the file index finds its files)
}

// StageLayer creates a staging dir for one layer on top of parent ("" for a base layer). Its DiffDir
// is empty in an overlay store; in a vfs store it holds a copy of the parent's tree, which the
// layer's changes are then applied to (so the parent must be committed already).
func (s *Store) StageLayer(parent string) (_ *StagedLayer, err error) {
	l := &StagedLayer{s: s, stage: path.Join(stagingDir, randomName()), parent: parent}
	defer func() {
		if err != nil {
			_ = l.Discard()
		}
	}()
	for _, d := range []string{l.stage, l.layerDir(), path.Join(l.layerDir(), s.paths.diffInLayer())} {
		if err := s.mkdir(d); err != nil {
			return nil, fmt.Errorf("creating staging dir: %w", err)
		}
	}
	// What the storage library's overlay and vfs drivers give a new layer's root: 0555 on a base
	// layer, the parent's mode on a child. In an overlay store every root stays 0555 (the unpacker
	// ignores a layer's "./" entry, as the overlay driver does), so that is the parent's mode too,
	// even while the parent is still being staged; a vfs child gets its parent's root, with the
	// rest of the tree, from copyParentTree.
	if err := s.chmod(path.Join(l.layerDir(), s.paths.diffInLayer()), layerRootMode); err != nil {
		return nil, fmt.Errorf("creating staging dir: %w", err)
	}
	if s.paths.driver == VFS && parent != "" {
		if err := s.copyParentTree(parent, l.DiffDir()); err != nil {
			return nil, err
		}
	}
	if err := l.stageCatalogMarker(); err != nil {
		return nil, fmt.Errorf("creating staging dir: %w", err)
	}
	l.tsFile, err = s.root.OpenFile(l.tarSplitFile(), os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		return nil, err
	}
	if err := l.tsFile.Chmod(fileMode); err != nil { // the umask may have narrowed the create mode
		return nil, err
	}
	l.tsBuf = bufio.NewWriterSize(l.tsFile, 64<<10)
	// BestSpeed, as the storage library compresses tar-split data.
	l.tsGzip, err = gzip.NewWriterLevel(l.tsBuf, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	if err := l.openLayerFiles(); err != nil {
		return nil, fmt.Errorf("creating staging dir: %w", err)
	}
	faultpoint.Hit("layer-staged")
	return l, nil
}

func (l *StagedLayer) layerDir() string     { return path.Join(l.stage, "layer") }
func (l *StagedLayer) tarSplitFile() string { return path.Join(l.stage, "tar-split.gz") }
func (l *StagedLayer) filesFile() string    { return path.Join(l.stage, stagedFilesName) }

// Files is how the unpacker shares file data with the files the store already holds, and records the
// layer's own files for the ones after it; nil when the store shares no data (Dedup off, or auto on a
// filesystem without reflinks).
func (l *StagedLayer) Files() *LayerFiles { return l.files }

// AppliesChanges says how the unpacker writes this layer: true when DiffDir holds the parent's tree
// and the layer's changes are applied to it (vfs: whiteouts delete), false when DiffDir gets the
// layer's own changes with whiteouts recorded as overlay's 0/0 devices and opaque xattrs.
func (l *StagedLayer) AppliesChanges() bool { return l.s.paths.driver == VFS }

// CommitsInOrder says whether a layer can be staged only once its parent is committed (vfs: the
// staged tree starts as a copy of the parent's), so layers are fetched and committed one by one.
func (s *Store) CommitsInOrder() bool { return s.paths.driver == VFS }

// DiffDir is where the unpacker writes the layer's files (an absolute path).
func (l *StagedLayer) DiffDir() string {
	return l.s.path(path.Join(l.layerDir(), l.s.paths.diffInLayer()))
}

// LowerDiffDirs returns the diff dirs of the layer's parent chain, nearest parent first (absolute
// paths), as an overlay mount stacks them below the layer: what the layer's opaque dirs hide. nil for
// a base layer. Every layer of the chain must be committed already.
func (l *StagedLayer) LowerDiffDirs() ([]string, error) {
	ids, err := l.s.chainBelow(l.parent)
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, id := range ids {
		dirs = append(dirs, l.s.path(path.Join(l.s.paths.layerDir(id), l.s.paths.diffInLayer())))
	}
	return dirs, nil
}

// chainBelow lists the committed layer id and its ancestors by ID, nearest first (none for ""): the
// layers below a staged layer whose parent is id. Every one of them must be committed.
func (s *Store) chainBelow(id string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for start := id; id != ""; {
		i := s.layerIndex(id)
		if i < 0 {
			return nil, fmt.Errorf("layer %s, below the staged layer, is not committed yet", id)
		}
		if len(ids) >= len(s.layers) {
			return nil, fmt.Errorf("the parent chain of layer %s loops in layers.json", start)
		}
		ids = append(ids, id)
		id = s.layers[i].Parent
	}
	return ids, nil
}

// TarSplit is where the unpacker writes tar-split's JSON packer stream (storage.NewJSONPacker); it is
// gzipped into the staging dir. A write error is returned to the writer and again by CommitLayer.
func (l *StagedLayer) TarSplit() io.Writer { return tarSplitWriter{l} }

type tarSplitWriter struct{ l *StagedLayer }

func (w tarSplitWriter) Write(p []byte) (int, error) {
	l := w.l
	if l.tsErr != nil {
		return 0, l.tsErr
	}
	if l.tsGzip == nil {
		return 0, errors.New("layout: writing tar-split of a layer already committed or discarded")
	}
	n, err := l.tsGzip.Write(p)
	if err != nil {
		l.tsErr = fmt.Errorf("writing tar-split data: %w", err)
	}
	return n, err
}

// finishTarSplit flushes and closes the tar-split file.
func (l *StagedLayer) finishTarSplit() error {
	if l.tsFile == nil {
		return l.tsErr
	}
	err := l.tsErr
	if err == nil {
		err = l.tsGzip.Close()
	}
	if err == nil {
		err = l.tsBuf.Flush()
	}
	if cerr := l.tsFile.Close(); err == nil {
		err = cerr
	}
	l.tsFile, l.tsGzip, l.tsBuf = nil, nil, nil
	return err
}

// Discard removes the staging dir. It may be called at any time, also after CommitLayer (then it does
// nothing), so callers can defer it.
func (l *StagedLayer) Discard() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.discardLocked()
}

func (l *StagedLayer) discardLocked() error {
	if l.done {
		return nil
	}
	l.done = true
	if l.tsFile != nil {
		_ = l.tsFile.Close() // discarded with the staging dir
		l.tsFile, l.tsGzip, l.tsBuf = nil, nil, nil
	}
	if l.files != nil {
		_ = l.files.finish(false) // discarded with the staging dir
	}
	l.s.mu.Lock() // keeps Close from closing the root meanwhile
	defer l.s.mu.Unlock()
	if l.s.closed {
		return nil // the next Open removes it
	}
	if err := l.s.root.RemoveAll(l.stage); err != nil {
		return fmt.Errorf("removing staging dir %s: %w", l.s.path(l.stage), err)
	}
	return nil
}

// LayerMeta is what layers.json records about a layer.
type LayerMeta struct {
	ID, Parent       string // chain IDs (hex); Parent "" for a base layer; the parent must already be committed
	CompressedDigest digest.Digest
	CompressedSize   int64
	DiffID           digest.Digest // uncompressed digest
	DiffSize         int64
	Compression      archive.Compression // archive.Gzip / archive.Zstd / archive.Uncompressed
	UIDs, GIDs       []uint32
}

func (m *LayerMeta) validate() error {
	if err := stringid.ValidateID(m.ID); err != nil {
		return fmt.Errorf("layer ID %q: %w", m.ID, err)
	}
	if m.Parent != "" {
		if err := stringid.ValidateID(m.Parent); err != nil {
			return fmt.Errorf("parent layer ID %q: %w", m.Parent, err)
		}
	}
	if err := m.DiffID.Validate(); err != nil {
		return fmt.Errorf("diff ID %q: %w", m.DiffID, err)
	}
	if m.CompressedDigest != "" {
		if err := m.CompressedDigest.Validate(); err != nil {
			return fmt.Errorf("compressed digest %q: %w", m.CompressedDigest, err)
		}
	}
	// Readers trust the ID to be the chain ID: a wrong one would silently pair an image with
	// someone else's layer contents.
	if want := ChainID(m.Parent, m.DiffID); m.ID != want {
		return fmt.Errorf("layer ID %s is not the chain ID %s of diff ID %s on parent %q", m.ID, want, m.DiffID, m.Parent)
	}
	if m.DiffSize < 0 || m.CompressedSize < 0 {
		return errors.New("negative layer size")
	}
	return nil
}

// CommitLayer makes a staged layer part of the store: it finishes the tar-split file, writes link,
// lower and lower-layers (or empty/ for a base layer; overlay only), syncs the filesystem once,
// renames the staging dir to overlay/<id> (vfs/dir/<id>), moves the tar-split to overlay-layers/
// (vfs-layers/), creates overlay/l/<link> (overlay only), syncs those directories, and only then
// records the layer in layers.json and a write on layers.lock. A crash at any point leaves nothing
// a reader sees. If the layer already exists, the staged copy is discarded and CommitLayer returns
// nil. CommitLayer always consumes l: on error the staging dir is removed too.
//
// Layers committed at the same time (by the images of a run fetched at once) are committed as one
// group: one syncfs and one write of layers.json for all of them (see commitGroup). The parent of
// a layer must be committed before the layer's CommitLayer is called.
func (s *Store) CommitLayer(l *StagedLayer, meta LayerMeta) (err error) {
	if l == nil || l.s != s {
		return errors.New("layout: CommitLayer of a layer staged in another store")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return fmt.Errorf("layout: layer %s was already committed or discarded", meta.ID)
	}
	defer func() {
		if derr := l.discardLocked(); err == nil {
			err = derr
		}
	}()
	if err := meta.validate(); err != nil {
		return fmt.Errorf("layer %s: %w", meta.ID, err)
	}
	if s.paths.driver == VFS && meta.Parent != l.parent {
		// The staged tree is a copy of the wrong parent: its contents would not be this layer's.
		return fmt.Errorf("layer %s: staged on parent %q, committed with parent %q", meta.ID, l.parent, meta.Parent)
	}

	req := &commitRequest{l: l, meta: meta}
	s.pendingMu.Lock()
	s.pending = append(s.pending, req)
	s.pendingMu.Unlock()
	s.committing.Lock()
	defer s.committing.Unlock()
	if !req.done { // else a group committed while this one waited took it along
		s.pendingMu.Lock()
		group := s.pending
		s.pending = nil
		s.pendingMu.Unlock()
		s.commitGroup(group)
	}
	return req.err
}

// A commitRequest is one CommitLayer waiting for its group to be committed. Its caller holds l.mu
// and waits, so the goroutine committing the group may use l meanwhile.
type commitRequest struct {
	l    *StagedLayer
	meta LayerMeta
	link string // its overlay/l/ name, once chosen
	err  error
	done bool
}

// commitGroup commits the layers of a group in three steps, each durable for all of them before
// the next: their link and lower files (one syncfs for those and every unpacked file), their dirs
// moved into place (one fsync of each directory that changed), their records (one layers.json).
// A layer that fails gets its error; the others go on.
func (s *Store) commitGroup(group []*commitRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	finish := func(rs []*commitRequest, err error) {
		for _, r := range rs {
			r.err, r.done = err, true
		}
	}
	if s.closed {
		finish(group, errors.New("layout: store is closed"))
		return
	}
	placing := s.prepareGroup(group)
	if len(placing) == 0 {
		return
	}
	// One syncfs makes every unpacked file durable before its dir gets its final name: after a
	// power cut, a dir under overlay/ never holds files whose data was lost.
	if err := s.syncFS(); err != nil {
		finish(placing, err)
		return
	}
	faultpoint.Hit("layer-lowers-written")
	placed := s.moveGroup(placing)
	if len(placed) == 0 {
		return
	}
	layers := slices.Clip(s.layers)
	for _, r := range placed {
		layers = append(layers, layerRecord(r.meta))
	}
	if err := s.writeLayers(layers); err != nil {
		finish(placed, fmt.Errorf("recording layers: %w", err))
		return
	}
	s.layers = layers
	for range placed {
		faultpoint.Hit("layer-recorded")
	}
	finish(placed, nil)
}

// prepareGroup finishes the tar-split and writes link and lower files of each layer of the group
// that the store lacks, and returns those; the others are done (already there: nil; failed: err).
func (s *Store) prepareGroup(group []*commitRequest) []*commitRequest {
	var placing []*commitRequest
	for _, r := range group {
		id := r.meta.ID
		if s.layerIndex(id) >= 0 || slices.ContainsFunc(placing, func(p *commitRequest) bool { return p.meta.ID == id }) {
			r.done = true // already there; the caller's deferred discard drops the staged copy
			continue
		}
		r.err = s.prepare(r)
		if r.err != nil {
			r.done = true
			continue
		}
		placing = append(placing, r)
	}
	return placing
}

// prepare finishes one staged layer's tar-split and writes its link and lower files.
func (s *Store) prepare(r *commitRequest) error {
	id := r.meta.ID
	var parent *storage.Layer
	if r.meta.Parent != "" {
		i := s.layerIndex(r.meta.Parent)
		if i < 0 {
			return fmt.Errorf("layer %s: parent layer %s is not committed yet", id, r.meta.Parent)
		}
		parent = &s.layers[i]
	}
	if err := r.l.finishTarSplit(); err != nil {
		return fmt.Errorf("layer %s: %w", id, err)
	}
	if r.l.files != nil {
		if err := r.l.files.finish(true); err != nil {
			return fmt.Errorf("layer %s: %w", id, err)
		}
	}
	if s.paths.linkDir == "" {
		return nil
	}
	var err error
	if r.link, err = s.newLink(); err != nil {
		return err
	}
	if err := s.writeLowers(r.l.layerDir(), r.link, parent); err != nil {
		return fmt.Errorf("layer %s: %w", id, err)
	}
	return nil
}

// moveGroup moves each prepared layer into place (layer dir, tar-split, overlay/l link) and makes
// the moves durable; it returns the layers placed. Nothing a reader sees changes until layers.json
// records them: a layer dir placed but not recorded is a leftover the next Open removes.
func (s *Store) moveGroup(placing []*commitRequest) []*commitRequest {
	var placed []*commitRequest
	for _, r := range placing {
		if r.err = s.move(r); r.err != nil {
			r.done = true
			continue
		}
		placed = append(placed, r)
	}
	if len(placed) == 0 {
		return nil
	}
	// The renames and the symlinks are durable before layers.json refers to them.
	synced := []string{s.paths.layerRoot, s.paths.layersDir}
	if s.paths.linkDir != "" {
		synced = append(synced, s.paths.linkDir)
	}
	if slices.ContainsFunc(placed, func(r *commitRequest) bool { return r.l.files != nil }) {
		synced = append(synced, filesDir)
	}
	for _, dir := range synced {
		if err := s.syncDir(dir); err != nil {
			for _, r := range placed {
				r.err, r.done = err, true
			}
			return nil
		}
	}
	for range placed {
		faultpoint.Hit("layer-synced")
	}
	return placed
}

// move renames one prepared layer's dir and tar-split into place and links it in overlay/l/.
func (s *Store) move(r *commitRequest) error {
	id := r.meta.ID
	if err := s.removeUnrecordedLayerDir(id); err != nil {
		return err
	}
	if err := s.root.Rename(r.l.layerDir(), s.paths.layerDir(id)); err != nil {
		return fmt.Errorf("layer %s: %w", id, err)
	}
	r.l.committedAs = id // where the file index finds the layer's files from now on (the caller holds l.mu)
	faultpoint.Hit("layer-renamed")
	if err := s.root.Rename(r.l.tarSplitFile(), path.Join(s.paths.layersDir, id+tarSplitSuffix)); err != nil {
		return fmt.Errorf("layer %s: %w", id, err)
	}
	faultpoint.Hit("layer-tarsplit-moved")
	if r.l.files != nil {
		if err := s.root.Rename(r.l.filesFile(), filesIndexPath(id)); err != nil {
			return fmt.Errorf("layer %s: %w", id, err)
		}
		faultpoint.Hit("layer-files-moved")
	}
	if r.link != "" {
		if err := s.root.Symlink(linkTarget(id), path.Join(s.paths.linkDir, r.link)); err != nil {
			return fmt.Errorf("layer %s: %w", id, err)
		}
	}
	faultpoint.Hit("layer-linked")
	return nil
}

// layerRecord is the layers.json record of a layer committed now.
func layerRecord(meta LayerMeta) storage.Layer {
	return storage.Layer{
		ID:                 meta.ID,
		Parent:             meta.Parent,
		Created:            time.Now().UTC(),
		CompressedDigest:   meta.CompressedDigest,
		CompressedSize:     meta.CompressedSize,
		UncompressedDigest: meta.DiffID,
		UncompressedSize:   meta.DiffSize,
		CompressionType:    meta.Compression,
		UIDs:               sortedIDs(meta.UIDs),
		GIDs:               sortedIDs(meta.GIDs),
	}
}

// writeLowers writes link, and lower and lower-layers (child) or empty/ (base layer) into a staged
// layer dir, with the contents drivers/overlay's create() gives them.
func (s *Store) writeLowers(dir, link string, parent *storage.Layer) error {
	if err := s.writeFile(path.Join(dir, linkName), []byte(link)); err != nil {
		return err
	}
	if parent == nil {
		return s.mkdir(path.Join(dir, emptyName))
	}
	pdir := s.paths.layerDir(parent.ID)

	// lower: "l/<parent link>" followed by the parent's own lower, nearest first.
	plink, err := s.root.ReadFile(path.Join(pdir, linkName))
	if err != nil {
		return fmt.Errorf("reading link of parent layer %s: %w", parent.ID, err)
	}
	if !linkRE.Match(plink) {
		return fmt.Errorf("parent layer %s has a malformed link file %q", parent.ID, plink)
	}
	lower := []string{path.Join("l", string(plink))}
	if plower, err := s.root.ReadFile(path.Join(pdir, lowerName)); err == nil {
		lower = append(lower, strings.Split(string(plower), ":")...)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := s.writeFile(path.Join(dir, lowerName), []byte(strings.Join(lower, ":"))); err != nil {
		return err
	}

	// lower-layers: the parent's ID followed by the parent's own lower layer IDs. The chain in
	// layers.json is the same list and does not depend on the parent having the file.
	ids := []string{parent.ID}
	for p := parent.Parent; p != ""; {
		i := s.layerIndex(p)
		if i < 0 {
			return fmt.Errorf("layer %s, an ancestor of the new layer, is missing from layers.json", p)
		}
		if len(ids) > len(s.layers) {
			return fmt.Errorf("the parent chain of layer %s loops at layer %s in layers.json", parent.ID, p)
		}
		ids = append(ids, p)
		p = s.layers[i].Parent
	}
	return s.writeFile(path.Join(dir, lowerLayersName), []byte(strings.Join(ids, ":")))
}

// newLink returns a fresh short name for overlay/l/: 26 characters of A–Z2–7, like drivers/overlay's
// generateID.
func (s *Store) newLink() (string, error) {
	for range 10 {
		link := rand.Text()[:linkLength] // 26 characters of A–Z2–7 already
		if _, err := s.root.Lstat(path.Join(s.paths.linkDir, link)); errors.Is(err, fs.ErrNotExist) {
			return link, nil
		}
	}
	return "", errors.New("layout: cannot find an unused link name")
}

// linkOf returns the overlay/l/ symlink of a layer, as the layer's link file names it; ok is false in
// a vfs store (no links) and when the link file is missing or malformed.
func (s *Store) linkOf(id string) (lpath string, ok bool) {
	if s.paths.linkDir == "" {
		return "", false
	}
	link, err := s.root.ReadFile(path.Join(s.paths.layerDir(id), linkName))
	if err != nil || !linkRE.Match(link) {
		return "", false
	}
	return path.Join(s.paths.linkDir, string(link)), true
}

// linkTarget is what a layer's overlay/l/ symlink points to, relative to overlay/l/.
func linkTarget(id string) string { return path.Join("..", id, diffName) }

// removeUnrecordedLayerDir removes a layer dir left by a run that crashed after renaming it into
// place but before recording it in layers.json, together with its overlay/l/ symlink (two symlinks to
// one layer confuse the driver's reverse lookup).
func (s *Store) removeUnrecordedLayerDir(id string) error {
	dir := s.paths.layerDir(id)
	if _, err := s.root.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	if lpath, ok := s.linkOf(id); ok {
		if target, err := s.root.Readlink(lpath); err == nil && target == linkTarget(id) {
			if err := s.root.Remove(lpath); err != nil {
				return err
			}
		}
	}
	if err := s.removeTree(dir); err != nil {
		return fmt.Errorf("removing unrecorded layer dir %s: %w", s.path(dir), err)
	}
	return nil
}

// writeLayers replaces layers.json with layers, under Podman's layers.lock.
func (s *Store) writeLayers(layers []storage.Layer) error {
	data, err := json.Marshal(layers)
	if err != nil {
		return err
	}
	return recordWrite(s.layersLock, func() error { return s.writeFileAtomic(s.paths.layersJSON, data) })
}

// sortedIDs returns the distinct IDs in ascending order, as the storage library records uidset/gidset.
func sortedIDs(ids []uint32) []uint32 {
	if len(ids) == 0 {
		return nil
	}
	res := slices.Clone(ids)
	slices.Sort(res)
	return slices.Compact(res)
}

func copyLayer(l storage.Layer) storage.Layer {
	l.Names = slices.Clone(l.Names)
	l.UIDs = slices.Clone(l.UIDs)
	l.GIDs = slices.Clone(l.GIDs)
	l.BigDataNames = slices.Clone(l.BigDataNames)
	l.UIDMap = slices.Clone(l.UIDMap)
	l.GIDMap = slices.Clone(l.GIDMap)
	l.Flags = maps.Clone(l.Flags)
	return l
}
