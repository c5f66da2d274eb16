package layout

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/klauspost/compress/gzip"
	"github.com/vbatts/tar-split/tar/storage"
	"golang.org/x/sys/unix"
)

// The file index: for every layer, .cargohold/dedup/<layer ID>.gz lists its regular files (path
// relative to the layer's diff dir, size, the crc64 of their first KeyPrefix bytes and their
// FileMeta.Key). It is written into the staging dir while the layer is unpacked and moved into place
// with the layer, before layers.json records it (like the tar-split), and removed with the layer's
// files by gc: a crash leaves at most an index of an unrecorded layer, which Open removes as a
// leftover. A layer without one (published with dedup off, or the file lost) gets it rebuilt from its
// tar-split and files, when a publish with sharing first needs the index and by Repair.
//
// The index is a hint and nothing more: the unpacker opens every candidate inside the store, checks
// that it is a regular file of the size asked for, and compares every byte (and for a hard link every
// attribute) before sharing anything with it. An index that lies costs a comparison, never a wrong file.

const (
	filesDir          = privateDir + "/dedup"
	filesSuffix       = ".gz"
	filesIndexHeader  = "cargohold-files 1"
	stagedFilesName   = "files.gz"
	maxRefsPerKey     = 4 // the newest files of one key that the index keeps in memory
	indexFieldsBefore = 3 // size, crc, meta: then the quoted path
)

// crcTable is tar-split's: the unpacker already computes this crc of every file for the tar-split.
var crcTable = storage.CRCTable

// fileRef is one file the index knows: in a committed layer, or in a layer staged by this run.
type fileRef struct {
	layer  string       // a committed layer's ID, or ""
	staged *StagedLayer // the staged layer it was written in, when layer is ""
	path   string       // relative to the layer's diff dir
}

// fileIndex is the store's index in memory: loaded from every recorded layer's index file when a
// publish first needs it, then kept up to date with what this run's layers add.
type fileIndex struct {
	sharing Sharing
	rootFd  int // O_PATH handle of the store root, for openat2 beneath it

	mu    sync.Mutex
	byKey map[FileKey][]fileRef // newest last; at most maxRefsPerKey

	belowMu    sync.Mutex
	layerFiles map[string]map[FileKey][]string // committed layers' files by key, for InLayersBelow
}

func (ix *fileIndex) mapKey(k FileKey) FileKey {
	if ix.sharing != ShareHardlink {
		k.Meta = 0 // extents are shared whatever the metadata
	}
	return k
}

func (ix *fileIndex) add(k FileKey, r fileRef) {
	k = ix.mapKey(k)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	refs := append(ix.byKey[k], r)
	if len(refs) > maxRefsPerKey {
		refs = append(refs[:0:0], refs[len(refs)-maxRefsPerKey:]...)
	}
	ix.byKey[k] = refs
}

func (ix *fileIndex) drop(k FileKey, r fileRef) {
	k = ix.mapKey(k)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	refs := ix.byKey[k]
	for i := range refs {
		if refs[i] == r {
			ix.byKey[k] = append(refs[:i:i], refs[i+1:]...)
			return
		}
	}
}

// A Candidate is a file of the store that the index says may have a FileKey.
type Candidate struct {
	s   *Store
	ix  *fileIndex
	key FileKey
	ref fileRef
}

// errCandidateGone: the candidate's layer was discarded or removed.
var errCandidateGone = errors.New("layout: the candidate's layer is gone")

// Open opens the candidate read-only (without changing its access time), inside the store and
// through no symlink. It must be a regular file of the key's size; anything else is an error, after
// which the caller should Drop the candidate.
func (c Candidate) Open() (*os.File, error) {
	rel, ok := c.s.refPath(c.ref)
	if !ok {
		return nil, errCandidateGone
	}
	how := unix.OpenHow{Flags: unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NOATIME,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := openat2(c.ix.rootFd, rel, &how)
	if errors.Is(err, unix.EPERM) { // O_NOATIME needs the file's owner or CAP_FOWNER
		how.Flags &^= unix.O_NOATIME
		fd, err = openat2(c.ix.rootFd, rel, &how)
	}
	if err != nil {
		return nil, &os.PathError{Op: "openat2", Path: c.s.path(rel), Err: err}
	}
	f := os.NewFile(uintptr(fd), c.s.path(rel))
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != c.key.Size {
		closeQuietly(f)
		return nil, fmt.Errorf("%s is not a regular file of %d bytes: the index is wrong", f.Name(), c.key.Size)
	}
	return f, nil
}

// Drop removes the candidate from this run's index: it lied, or its inode cannot take another link.
func (c Candidate) Drop() { c.ix.drop(c.key, c.ref) }

func openat2(dirFd int, p string, how *unix.OpenHow) (int, error) {
	for tries := 0; ; tries++ {
		fd, err := unix.Openat2(dirFd, p, how)
		if (err == unix.EAGAIN && tries < 16) || err == unix.EINTR {
			continue
		}
		return fd, err
	}
}

// refPath is where a file of the index is now, relative to the store; ok is false when its layer is
// gone (a staged layer that was discarded).
func (s *Store) refPath(r fileRef) (string, bool) {
	if r.layer != "" {
		return path.Join(s.paths.layerDir(r.layer), s.paths.diffInLayer(), r.path), true
	}
	l := r.staged
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.committedAs != "":
		return path.Join(s.paths.layerDir(l.committedAs), s.paths.diffInLayer(), r.path), true
	case l.done:
		return "", false
	}
	return path.Join(l.layerDir(), s.paths.diffInLayer(), r.path), true
}

// LayerFiles is what the unpacker of one staged layer asks about the files the store already holds,
// and tells about the files it wrote (nil: the store shares no data).
type LayerFiles struct {
	l       *StagedLayer
	ix      *fileIndex
	sharing Sharing

	mu  sync.Mutex
	f   *os.File
	buf *bufio.Writer
	gz  *gzip.Writer
	err error // the first error writing the index file

	belowMu  sync.Mutex
	below    []string // the committed layers below (InLayersBelow)
	belowAll bool     // below holds every layer below: all are committed
}

// Sharing says how the layer's files share data.
func (lf *LayerFiles) Sharing() Sharing { return lf.sharing }

// Candidates lists the files of the store (and of the layers this run staged, but this one) that may
// have key k, newest first. The list is a hint: see Candidate.
func (lf *LayerFiles) Candidates(k FileKey) []Candidate {
	mk := lf.ix.mapKey(k)
	lf.ix.mu.Lock()
	defer lf.ix.mu.Unlock()
	refs := lf.ix.byKey[mk]
	res := make([]Candidate, 0, len(refs))
	for i := len(refs) - 1; i >= 0; i-- {
		if refs[i].staged != lf.l || lf.sharing == ShareReflink { // a layer's own files: extents only
			res = append(res, Candidate{s: lf.l.s, ix: lf.ix, key: k, ref: refs[i]})
		}
	}
	return res
}

// InLayersBelow says whether a file of a layer below this one (its parent, the parent's parent, ...)
// with key k is the inode ino: a container of this layer sees those files too, so a hard link to ino
// would show it two names the image does not have. It is an error while a layer below is not
// committed yet (the unpacker asks before: see builder/unpack's linkable), and when one cannot be
// read. Each layer's file index is read once per run (the layers below are the same for every layer
// of a series). Safe for concurrent use.
func (lf *LayerFiles) InLayersBelow(k FileKey, ino uint64) (bool, error) {
	s := lf.l.s
	ids, err := lf.layersBelow()
	if err != nil {
		return false, err
	}
	for _, id := range ids {
		byKey, err := lf.ix.filesByKey(s, id)
		if err != nil {
			return false, fmt.Errorf("reading the file index of layer %s, below: %w", id, err)
		}
		for _, p := range byKey[k] {
			if fi, err := s.root.Lstat(p); err == nil {
				if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Ino == ino {
					return true, nil
				}
			}
		}
	}
	return false, nil
}

// layersBelow lists the layers below this one, nearest first (an error while one is not committed
// yet); the list is kept once they all are.
func (lf *LayerFiles) layersBelow() ([]string, error) {
	lf.belowMu.Lock()
	defer lf.belowMu.Unlock()
	if lf.belowAll {
		return lf.below, nil
	}
	ids, err := lf.l.s.chainBelow(lf.l.parent)
	if err == nil {
		lf.below, lf.belowAll = ids, true
	}
	return ids, err
}

// filesByKey is the files of committed layer id by key (paths relative to the store), from its index
// file, read on the first call of the run.
func (ix *fileIndex) filesByKey(s *Store, id string) (map[FileKey][]string, error) {
	ix.belowMu.Lock()
	defer ix.belowMu.Unlock()
	if byKey, ok := ix.layerFiles[id]; ok {
		return byKey, nil
	}
	entries, err := s.layerFiles(id)
	if err != nil {
		return nil, err
	}
	diff := path.Join(s.paths.layerDir(id), s.paths.diffInLayer())
	byKey := make(map[FileKey][]string, len(entries))
	for _, e := range entries {
		byKey[e.key] = append(byKey[e.key], path.Join(diff, e.path))
	}
	if ix.layerFiles == nil {
		ix.layerFiles = map[string]map[FileKey][]string{}
	}
	ix.layerFiles[id] = byKey
	return byKey, nil
}

// Add records that the layer's file name (relative to its diff dir, through no symlink), complete by
// now, has key k: it goes into the layer's index file and is a candidate for the files unpacked after it.
func (lf *LayerFiles) Add(name string, k FileKey) error {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if lf.err != nil {
		return lf.err
	}
	if lf.gz == nil {
		return errors.New("layout: adding a file to a layer already committed or discarded")
	}
	if _, err := fmt.Fprintf(lf.gz, "%d %016x %016x %s\n", k.Size, k.CRC, k.Meta, strconv.Quote(name)); err != nil {
		lf.err = fmt.Errorf("writing the file index: %w", err)
		return lf.err
	}
	lf.ix.add(k, fileRef{staged: lf.l, path: name})
	return nil
}

// openLayerFiles starts the staged layer's index file, when the store shares file data.
func (l *StagedLayer) openLayerFiles() error {
	sharing, err := l.s.Sharing()
	if err != nil || sharing == ShareNone {
		return err
	}
	ix, err := l.s.loadFileIndex()
	if err != nil {
		return err
	}
	f, err := l.s.root.OpenFile(l.filesFile(), os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		return err
	}
	lf := &LayerFiles{l: l, ix: ix, sharing: sharing, f: f, buf: bufio.NewWriterSize(f, 32<<10)}
	lf.gz, _ = gzip.NewWriterLevel(lf.buf, gzip.BestSpeed) // a valid level: no error
	if _, err := io.WriteString(lf.gz, filesIndexHeader+"\n"); err != nil {
		closeQuietly(f)
		return err
	}
	l.files = lf
	return nil
}

// finish completes the index file (ok: to be moved into place) or just closes it.
func (lf *LayerFiles) finish(ok bool) error {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if lf.f == nil {
		return lf.err
	}
	err := lf.err
	if ok && err == nil {
		if err = lf.gz.Close(); err == nil {
			err = lf.buf.Flush()
		}
	}
	if cerr := lf.f.Close(); err == nil {
		err = cerr
	}
	lf.f, lf.gz, lf.buf = nil, nil, nil
	return err
}

// loadFileIndex returns the store's file index, reading every recorded layer's index file the first
// time (and rebuilding the ones that are missing or unreadable).
func (s *Store) loadFileIndex() (*fileIndex, error) {
	s.filesMu.Lock()
	defer s.filesMu.Unlock()
	if s.files != nil {
		return s.files, nil
	}
	sharing, err := s.Sharing()
	if err != nil {
		return nil, err
	}
	if s.rootDir == nil {
		if s.rootDir, err = s.root.Open("."); err != nil {
			return nil, err
		}
	}
	ix := &fileIndex{sharing: sharing, rootFd: int(s.rootDir.Fd()), byKey: map[FileKey][]fileRef{}}
	if err := s.mkdir(filesDir); err != nil {
		return nil, err
	}
	s.mu.Lock()
	ids := make([]string, len(s.layers))
	for i, l := range s.layers {
		ids[i] = l.ID
	}
	s.mu.Unlock()
	for _, id := range ids {
		entries, err := s.layerFiles(id)
		if err != nil {
			continue // no candidates from this layer; Repair reports why
		}
		for _, e := range entries {
			ix.add(e.key, fileRef{layer: id, path: e.path})
		}
	}
	s.files = ix
	return ix, nil
}

// dropFileIndex forgets the index in memory (gc removed layers); the next publish reads it again.
func (s *Store) dropFileIndex() {
	s.filesMu.Lock()
	defer s.filesMu.Unlock()
	s.files = nil
}

// indexEntry is one line of an index file.
type indexEntry struct {
	key  FileKey
	path string
}

func filesIndexPath(id string) string { return path.Join(filesDir, id+filesSuffix) }

// layerFiles reads a recorded layer's index file, or rebuilds (and writes) it if it is missing or
// unreadable.
func (s *Store) layerFiles(id string) ([]indexEntry, error) {
	data, err := s.root.ReadFile(filesIndexPath(id))
	if err == nil {
		if entries, err := parseFilesIndex(data); err == nil {
			return entries, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	entries, err := s.buildLayerFiles(id)
	if err != nil {
		return nil, err
	}
	if err := s.writeFileAtomic(filesIndexPath(id), encodeFilesIndex(entries)); err != nil {
		return nil, err
	}
	return entries, nil
}

func encodeFilesIndex(entries []indexEntry) []byte {
	var b bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&b, gzip.BestSpeed) // a valid level: no error
	_, _ = fmt.Fprintln(gz, filesIndexHeader)        // into memory: cannot fail
	for _, e := range entries {
		_, _ = fmt.Fprintf(gz, "%d %016x %016x %s\n", e.key.Size, e.key.CRC, e.key.Meta, strconv.Quote(e.path))
	}
	_ = gz.Close()
	return b.Bytes()
}

func parseFilesIndex(data []byte) ([]indexEntry, error) {
	gz, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(gz)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	if !sc.Scan() || sc.Text() != filesIndexHeader {
		return nil, fmt.Errorf("not a file index (want the header %q)", filesIndexHeader)
	}
	var entries []indexEntry
	for sc.Scan() {
		e, err := parseIndexLine(sc.Text())
		if err != nil {
			return nil, err
		}
		entries = append(entries, e)
	}
	return entries, sc.Err()
}

func parseIndexLine(line string) (indexEntry, error) {
	f := strings.SplitN(line, " ", indexFieldsBefore+1)
	if len(f) != indexFieldsBefore+1 {
		return indexEntry{}, fmt.Errorf("bad file index line %q", line)
	}
	size, err1 := strconv.ParseInt(f[0], 10, 64)
	crc, err2 := strconv.ParseUint(f[1], 16, 64)
	meta, err3 := strconv.ParseUint(f[2], 16, 64)
	p, err4 := strconv.Unquote(f[3])
	if err := errors.Join(err1, err2, err3, err4); err != nil || size <= 0 || !fs.ValidPath(p) || p == "." {
		return indexEntry{}, fmt.Errorf("bad file index line %q", line)
	}
	return indexEntry{key: FileKey{Size: size, CRC: crc, Meta: meta}, path: p}, nil
}

// buildLayerFiles makes a recorded layer's index from its tar-split (every regular file with data,
// and the crc of its whole body: the key of a file up to KeyPrefix bytes) and the files themselves
// (the real path of each, the first KeyPrefix bytes of a longer one, and the metadata).
func (s *Store) buildLayerFiles(id string) ([]indexEntry, error) {
	ts, err := s.root.Open(path.Join(s.paths.layersDir, id+tarSplitSuffix))
	if err != nil {
		return nil, err
	}
	defer closeQuietly(ts)
	gz, err := gzip.NewReader(bufio.NewReader(ts))
	if err != nil {
		return nil, fmt.Errorf("layer %s: reading its tar-split: %w", id, err)
	}
	diff := path.Join(s.paths.layerDir(id), s.paths.diffInLayer())
	d, err := s.root.Open(diff)
	if err != nil {
		return nil, err
	}
	defer closeQuietly(d)
	real, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(d.Fd())))
	if err != nil {
		return nil, err
	}
	b := indexBuilder{dirFd: int(d.Fd()), real: real, buf: make([]byte, KeyPrefix)}
	up := storage.NewJSONUnpacker(gz)
	for {
		e, err := up.Next()
		if errors.Is(err, io.EOF) {
			return b.entries, nil
		}
		if err != nil {
			return nil, fmt.Errorf("layer %s: reading its tar-split: %w", id, err)
		}
		if e.Type == storage.FileType && e.Size > 0 && len(e.Payload) == 8 {
			b.add(string(e.GetName()), e.Size, binary.BigEndian.Uint64(e.Payload))
		}
	}
}

// indexBuilder finds the files a tar-split names below one layer's diff dir.
type indexBuilder struct {
	dirFd   int
	real    string // the diff dir's real path
	buf     []byte
	entries []indexEntry
}

// add indexes the file the tar entry name wrote, if it is still a regular file of that size; others
// (replaced later in the layer, or the lost target of a hard link) are left out.
func (b *indexBuilder) add(name string, size int64, bodyCRC uint64) {
	// As the unpacker resolved it: symlinks of the layer resolve inside the layer.
	how := unix.OpenHow{Flags: unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NOATIME,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := openat2(b.dirFd, strings.TrimLeft(name, "/"), &how)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), name)
	defer closeQuietly(f)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != size {
		return
	}
	real, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	rel, ok := strings.CutPrefix(real, strings.TrimSuffix(b.real, "/")+"/")
	if err != nil || !ok {
		return
	}
	key := FileKey{Size: size, CRC: bodyCRC}
	if size > KeyPrefix {
		if _, err := io.ReadFull(f, b.buf); err != nil {
			return
		}
		key.CRC = crc64.Checksum(b.buf, crcTable)
	}
	meta, err := ReadFileMeta(f)
	if err != nil {
		return
	}
	key.Meta = meta.Key()
	b.entries = append(b.entries, indexEntry{key: key, path: rel})
}
