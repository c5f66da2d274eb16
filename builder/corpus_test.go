package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cargohold/cargohold/internal/testenv"
	"github.com/cargohold/cargohold/internal/testfs"
	"github.com/cargohold/cargohold/internal/testimage"
	"github.com/cargohold/cargohold/layout"
	"github.com/cargohold/cargohold/layout/podmancheck"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/signature"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/transports/alltransports"
	"go.podman.io/storage"
	"go.podman.io/storage/pkg/system"
	"golang.org/x/sys/unix"
)

// The differential corpus (issue 14): each image of testimage's corpus is published by cargohold
// and pulled by the storage library itself (go.podman.io/image's copy.Image into a containers-storage
// store of the overlay driver, in-process: what `podman pull` does), and every layer's diff/ tree
// is compared field by field. scripts/e2e-matrix does the same with real Podman versions and
// whole container trees.

func TestCorpusMatchesStorageLibrary(t *testing.T) {
	testenv.RequireRoot(t)
	for _, f := range testimage.CorpusFixtures(fakeBusybox) {
		if f.Name == "corpus-big" {
			continue // TestCorpusBigMatchesStorageLibrary
		}
		t.Run(f.Ref(), func(t *testing.T) { compareWithStorageLibrary(t, f) })
	}
}

// 50,000 files in one layer: a test of its own, so that `go test -run` can leave it out.
func TestCorpusBigMatchesStorageLibrary(t *testing.T) {
	testenv.RequireRoot(t)
	for _, f := range testimage.CorpusFixtures(fakeBusybox) {
		if f.Name == "corpus-big" {
			compareWithStorageLibrary(t, f)
		}
	}
}

// cargohold refuses a case's image exactly when the storage library does: each case alone, on the
// same base, into one store per side.
func TestCorpusRefusesOnlyWhatStorageLibraryRefuses(t *testing.T) {
	testenv.RequireRoot(t)
	store, storeDir := openStore(t)
	p := &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t)}}
	ref := newReferenceStore(t)
	layouts := t.TempDir()
	for _, cs := range testimage.CorpusCases() {
		dir := filepath.Join(layouts, cs.Name)
		if _, err := testimage.WriteLayout(dir, "1", testimage.CaseImage(fakeBusybox, cs, testimage.Gzip)); err != nil {
			t.Fatal(err)
		}
		src := "oci:" + dir + ":1"
		theirs := ref.pull(src, "localhost/corpus-case/"+cs.Name+":1")
		ours := publish(t, p, src, "localhost/corpus-case/"+cs.Name+":1").Err
		switch {
		case cs.Refused != "" && theirs == nil:
			t.Errorf("%s: the storage library accepts it, but the corpus says it refuses it (%s)", cs.Name, cs.Refused)
		case theirs == nil && ours != nil:
			t.Errorf("%s: cargohold refuses what the storage library accepts: %v", cs.Name, ours)
		case theirs != nil && ours == nil:
			t.Errorf("%s: cargohold accepts what the storage library refuses: %v", cs.Name, theirs)
		case theirs != nil:
			t.Logf("%s: both refuse; cargohold: %v; storage library: %v", cs.Name, ours, theirs)
		}
	}
	if err := testimage.VerifyStore(storeDir, "overlay"); err != nil {
		t.Errorf("after the refused publishes, the storage library does not accept the store: %v", err)
	}
}

// The corpus in a store that shares file data by reflinks (the default on XFS): corpus-zstd:1 first,
// whose layers hold the same files as corpus:1's (but for /compression), then corpus:1, every file of
// which shares its extents with corpus-zstd:1's; its trees must still be the storage library's.
// (Without device/large: XFS keeps device numbers of at most 14 bits major and 18 bits minor, and
// refuses that one, to Podman as to cargohold.)
func TestCorpusOnAReflinkStore(t *testing.T) {
	testenv.RequireRoot(t)
	started := time.Now()
	mnt := testfs.XFS(t, 0)
	storeDir := filepath.Join(mnt, "store")
	p := &Publisher{Store: openStoreAt(t, storeDir, layout.Options{}), Options: Options{PolicyPath: acceptAnythingPolicy(t)}}
	fixtures := map[string]testimage.Fixture{}
	for _, f := range testimage.CorpusFixtures(fakeBusybox) {
		for i, l := range f.Image.Layers {
			f.Image.Layers[i].Entries = slices.DeleteFunc(slices.Clone(l.Entries), func(e testimage.Entry) bool {
				return e.Header.Name == "device/large"
			})
		}
		fixtures[f.Ref()] = f
	}
	first := fixtures["corpus-zstd:1"]
	dir := filepath.Join(t.TempDir(), first.Name)
	if _, err := testimage.WriteLayout(dir, first.Tag, first.Image); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, p, "oci:"+dir+":"+first.Tag, "localhost/cargotest/"+first.Ref())
	// The storage library's store on XFS too: XFS lists a POSIX ACL also as trusted.SGI_ACL_* to root.
	ref := newReferenceStoreIn(t, mnt)
	res := compareWithStorageLibraryIn(t, fixtures["corpus:1"], p, storeDir, ref, started)
	if res.FilesShared < 20 {
		t.Errorf("corpus:1 shared %d files with corpus-zstd:1, want most of its files", res.FilesShared)
	}
	if err := testimage.VerifyStore(storeDir, "overlay"); err != nil {
		t.Error(err)
	}
}

// compareWithStorageLibrary publishes f and pulls it with the storage library, then compares the
// two stores' layers, diff/ by diff/.
func compareWithStorageLibrary(t *testing.T, f testimage.Fixture) {
	started := time.Now()
	store, storeDir := openStore(t)
	compareWithStorageLibraryIn(t, f, &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t)}}, storeDir,
		newReferenceStore(t), started)
}

// compareWithStorageLibraryIn is compareWithStorageLibrary with p publishing into the store at
// storeDir, ref pulling, and layer roots made from started on.
func compareWithStorageLibraryIn(t *testing.T, f testimage.Fixture, p *Publisher, storeDir string, ref libStore, started time.Time) Result {
	dir := filepath.Join(t.TempDir(), f.Name)
	if _, err := testimage.WriteLayout(dir, f.Tag, f.Image); err != nil {
		t.Fatal(err)
	}
	src, name := "oci:"+dir+":"+f.Tag, "localhost/cargotest/"+f.Ref()
	if err := ref.pull(src, name); err != nil {
		t.Fatalf("the storage library refuses %s: %v", f.Ref(), err)
	}
	res := mustPublish(t, p, src, name)

	theirs := ref.layerDirs(t, name)
	ours := readStore(t, storeDir).layerDirs(t, name)
	if !slices.Equal(ids(ours), ids(theirs)) {
		t.Fatalf("layers differ:\n  cargohold:       %v\n  storage library: %v", ids(ours), ids(theirs))
	}
	var below []map[string]node // the storage library's trees of the layers below
	for i := range ours {
		want := snapshot(t, theirs[i].diff)
		c := comparison{ours: snapshot(t, ours[i].diff), theirs: want, below: merge(below), started: started}
		below = append(below, want)
		asPodman(want, below[0]["."])
		for _, d := range c.diffs() {
			t.Errorf("layer %d (%s) %s", i, f.Image.Layers[i].CreatedBy, d)
		}
	}
	return res
}

// libStore is a containers-storage store opened with the storage library.
type libStore struct{ storage.Store }

// newReferenceStore is an empty store of the overlay driver under t.TempDir, for the storage
// library to pull into.
func newReferenceStore(t *testing.T) libStore {
	t.Helper()
	return newReferenceStoreIn(t, t.TempDir())
}

// newReferenceStoreIn is newReferenceStore with its graph root in dir.
func newReferenceStoreIn(t *testing.T, dir string) libStore {
	t.Helper()
	s, err := storage.GetStore(storage.StoreOptions{RunRoot: t.TempDir(), GraphRoot: filepath.Join(dir, "reference"), GraphDriverName: "overlay"})
	if err != nil {
		t.Fatalf("the storage library's overlay driver: %v", err)
	}
	t.Cleanup(func() { _, _ = s.Shutdown(true) })
	return libStore{Store: s}
}

// readStore opens the cargohold store at dir as Podman does: an additional image store of a
// scratch store (only to locate its layers: nothing is mounted or written there).
func readStore(t *testing.T, dir string) libStore {
	t.Helper()
	s, err := storage.GetStore(storage.StoreOptions{RunRoot: t.TempDir(), GraphRoot: t.TempDir(),
		GraphDriverName: "overlay", GraphDriverOptions: podmancheck.DriverOptions("overlay", dir)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = s.Shutdown(true) })
	return libStore{Store: s}
}

// pull copies the image at src into the store as name, as `podman pull` does.
func (s libStore) pull(src, name string) error {
	srcRef, err := alltransports.ParseImageName(src)
	if err != nil {
		return err
	}
	dest, err := istorage.Transport.ParseStoreReference(s.Store, name)
	if err != nil {
		return err
	}
	policy, err := signature.NewPolicyContext(&signature.Policy{Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()}})
	if err != nil {
		return err
	}
	defer func() { _ = policy.Destroy() }()
	_, err = copy.Image(context.Background(), policy, dest, srcRef, &copy.Options{ReportWriter: io.Discard})
	return err
}

type layerDir struct{ id, diff string }

func ids(ls []layerDir) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.id)
	}
	return out
}

// layerDirs are the diff/ directories of the image's layers, base first, as the driver finds them.
func (s libStore) layerDirs(t *testing.T, name string) []layerDir {
	t.Helper()
	img, err := s.Image(name)
	if err != nil {
		t.Fatal(err)
	}
	var out []layerDir
	for id := img.TopLayer; id != ""; {
		l, err := s.Layer(id)
		if err != nil {
			t.Fatal(err)
		}
		driver, err := s.GraphDriver()
		if err != nil {
			t.Fatal(err)
		}
		meta, err := driver.Metadata(id)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, layerDir{id: id, diff: meta["UpperDir"]})
		id = l.Parent
	}
	slices.Reverse(out)
	return out
}

// node is what a reader can see of one path in a layer's diff/.
type node struct {
	typ      string
	mode     uint32 // permission and setuid/setgid/sticky bits
	uid, gid uint32
	size     int64 // regular files and symlinks only: a directory's size is the file system's business
	mtime    time.Time
	nlink    uint64
	rdev     uint64
	target   string            // symlink target
	sha256   string            // regular file content
	xattrs   map[string]string // name → value, %q-quoted
	links    string            // the other names of a hard-linked inode in this layer
}

// snapshot records every path under root, "." for root itself.
func snapshot(t *testing.T, root string) map[string]node {
	t.Helper()
	out := map[string]node{}
	inodes := map[uint64][]string{}
	err := filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		n, ino, err := stat(path)
		if err != nil {
			return err
		}
		if n.typ != "dir" && n.nlink > 1 {
			inodes[ino] = append(inodes[ino], rel)
		}
		out[rel] = n
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, names := range inodes {
		for _, name := range names {
			n := out[name]
			n.links = strings.Join(slices.DeleteFunc(slices.Clone(names), func(s string) bool { return s == name }), ", ")
			out[name] = n
		}
	}
	return out
}

func stat(path string) (node, uint64, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return node{}, 0, err
	}
	n := node{
		mode: st.Mode & 0o7777, uid: st.Uid, gid: st.Gid, nlink: st.Nlink,
		mtime: time.Unix(st.Mtim.Unix()).UTC(),
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		n.typ = "dir"
	case unix.S_IFREG:
		n.typ, n.size = "file", st.Size
		sum, err := fileSHA256(path)
		if err != nil {
			return n, 0, err
		}
		n.sha256 = sum
	case unix.S_IFLNK:
		n.typ, n.size = "symlink", st.Size
		target, err := os.Readlink(path)
		if err != nil {
			return n, 0, err
		}
		n.target = target
	case unix.S_IFCHR:
		n.typ, n.rdev = "char", st.Rdev
	case unix.S_IFBLK:
		n.typ, n.rdev = "block", st.Rdev
	case unix.S_IFIFO:
		n.typ = "fifo"
	default:
		n.typ = fmt.Sprintf("type %o", st.Mode&unix.S_IFMT)
	}
	xattrs, err := readXattrs(path)
	n.xattrs = xattrs
	return n, st.Ino, err
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer func() { _ = f.Close() }() // read-only: a close error changes nothing read
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func readXattrs(path string) (map[string]string, error) {
	names, err := system.Llistxattr(path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, name := range names {
		v, err := system.Lgetxattr(path, name)
		if err != nil {
			return nil, err
		}
		out[name] = fmt.Sprintf("%q", v)
	}
	return out, nil
}

// asPodman corrects the storage library's tree (go.podman.io/storage v1.65 built with this Go)
// where it differs from the Podman versions sites run: Podman 4.3 measured here (`podman pull` of
// corpus:1), 5.4 and 5.8 per issue 14. base is the base layer's root, where all agree.
func asPodman(tree map[string]node, base node) {
	// The storage library v1.65 applies a "./" entry to the layer root; Podman ignores it: every
	// diff/ keeps the base layer's 0555 root:root (a child takes its parent's) and the time of unpacking.
	root := tree["."]
	root.mode, root.uid, root.gid, root.mtime = base.mode, base.uid, base.gid, time.Now()
	tree["."] = root
	// The storage library v1.65 with this Go's tar reader writes an empty-valued PAX xattr;
	// Podman's builds drop it.
	for p, n := range tree {
		for name, v := range n.xattrs {
			if v == `""` {
				delete(n.xattrs, name)
			}
		}
		tree[p] = n
	}
}

// opaqueXattr is how the storage library marks an opaque directory in a rootful overlay store.
const opaqueXattr = "trusted.overlay.opaque"

// comparison is one layer's diff/ as cargohold (ours) and the storage library (theirs) wrote it.
type comparison struct {
	ours, theirs map[string]node
	// below is what the layers below show (the storage library's trees, merged).
	below   mergedView
	started time.Time
}

// diffs lists every difference, path by path, apart from the known and intended ones.
func (c comparison) diffs() []string {
	var diffs []string
	for _, p := range slices.Sorted(maps.Keys(joinKeys(c.ours, c.theirs))) {
		o, inOurs := c.ours[p]
		th, inTheirs := c.theirs[p]
		switch {
		case !inTheirs && isWhiteout(o) && c.underOpaque(p) && c.below.tree[p].typ != "":
			// Intended: the opaque helper whiteouts what an opaque dir hides below (see opaqueXattr).
		case !inTheirs: // cargohold keeps its own files beside diff/, never in it: no exception here
			diffs = append(diffs, fmt.Sprintf("%q: only in cargohold's layer (%s)", p, o.typ))
		case !inOurs:
			diffs = append(diffs, fmt.Sprintf("%q: missing from cargohold's layer (%s)", p, th.typ))
		default:
			for _, d := range c.nodeDiffs(p, o, th) {
				diffs = append(diffs, fmt.Sprintf("%q: %s", p, d))
			}
		}
	}
	return diffs
}

func isWhiteout(n node) bool { return n.typ == "char" && n.rdev == 0 }

// hidesAllBelow: cargohold's dir p, not marked opaque, still hides everything the layers below
// show in it: each name has an entry of its own (a whiteout, or a file), and a directory that
// merges with a lower one hides that one's names in turn.
func (c comparison) hidesAllBelow(p string) bool {
	for _, name := range c.below.children[p] {
		q := filepath.Join(p, name)
		o, ok := c.ours[q]
		if !ok {
			return false
		}
		if o.typ == "dir" && o.xattrs[opaqueXattr] == "" && c.below.tree[q].typ == "dir" && !c.hidesAllBelow(q) {
			return false
		}
	}
	return true
}

// underOpaque: p is in a dir that the storage library marks opaque in this layer, or below one.
func (c comparison) underOpaque(p string) bool {
	for d := filepath.Dir(p); d != "."; d = filepath.Dir(d) {
		if c.theirs[d].xattrs[opaqueXattr] != "" {
			return true
		}
	}
	return false
}

// mergedView is what the layers below show, merged as overlayfs merges them.
type mergedView struct {
	tree     map[string]node
	children map[string][]string // dir → the names in it
}

// merge stacks layer trees (base first): a whiteout deletes its path, an opaque dir or a
// non-directory replaces what was below it.
func merge(layers []map[string]node) mergedView {
	tree := map[string]node{}
	deleteUnder := func(p string) {
		for q := range tree {
			if strings.HasPrefix(q, p+"/") {
				delete(tree, q)
			}
		}
	}
	for _, layer := range layers {
		for _, p := range slices.Sorted(maps.Keys(layer)) { // parents before their children
			n := layer[p]
			if old, ok := tree[p]; ok && old.typ == "dir" && (n.typ != "dir" || n.xattrs[opaqueXattr] != "") {
				deleteUnder(p)
			}
			if isWhiteout(n) {
				delete(tree, p)
				continue
			}
			tree[p] = n
		}
	}
	v := mergedView{tree: tree, children: map[string][]string{}}
	for p := range tree {
		if p != "." {
			v.children[filepath.Dir(p)] = append(v.children[filepath.Dir(p)], filepath.Base(p))
		}
	}
	return v
}

func (c comparison) nodeDiffs(p string, o, th node) []string {
	started := c.started
	var diffs []string
	field := func(name string, ours, theirs any) {
		if ours != theirs {
			diffs = append(diffs, fmt.Sprintf("%s: cargohold %v, storage library %v", name, ours, theirs))
		}
	}
	field("type", o.typ, th.typ)
	field("mode", fmt.Sprintf("%04o", o.mode), fmt.Sprintf("%04o", th.mode))
	field("uid", o.uid, th.uid)
	field("gid", o.gid, th.gid)
	field("size", o.size, th.size)
	field("nlink", o.nlink, th.nlink)
	field("hard links", o.links, th.links)
	field("rdev", o.rdev, th.rdev)
	field("link target", o.target, th.target)
	field("content sha256", o.sha256, th.sha256)
	// A directory made while unpacking (the layer root, an implicit parent) has the time it was
	// made: both sides' are after the test started, and cannot be equal.
	if !o.mtime.Equal(th.mtime) && (o.mtime.Before(started) || th.mtime.Before(started)) {
		field("mtime", o.mtime.Format(time.RFC3339Nano), th.mtime.Format(time.RFC3339Nano))
	}
	for _, name := range slices.Sorted(maps.Keys(joinKeys(o.xattrs, th.xattrs))) {
		// Intended: the storage library writes trusted.overlay.opaque only; cargohold marks an opaque
		// dir for rootless readers too (user.overlay.opaque), or, with the opaque helper's change,
		// instead whiteouts each name the layers below show in it (no user.* attribute to leak).
		switch {
		case name == "user.overlay.opaque" && th.xattrs[opaqueXattr] != "":
			continue
		case name == opaqueXattr && o.xattrs[name] == "" && c.hidesAllBelow(p):
			continue
		}
		ours, inOurs := o.xattrs[name]
		theirs, inTheirs := th.xattrs[name]
		field("xattr "+name, orAbsent(ours, inOurs), orAbsent(theirs, inTheirs))
	}
	return diffs
}

func orAbsent(v string, ok bool) string {
	if !ok {
		return "(absent)"
	}
	return v
}

func joinKeys[V any](a, b map[string]V) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// The comparison itself: two pulls of the corpus by the storage library compare equal, and a
// change of mode, owner, content or xattr in one of them is found and named by its path.
func TestCorpusComparisonFindsChanges(t *testing.T) {
	testenv.RequireRoot(t)
	f := testimage.CorpusFixtures(fakeBusybox)[0]
	dir := filepath.Join(t.TempDir(), f.Name)
	if _, err := testimage.WriteLayout(dir, f.Tag, f.Image); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	var pulls [2][]layerDir
	for i := range pulls {
		s := newReferenceStore(t)
		if err := s.pull("oci:"+dir+":"+f.Tag, "localhost/cargotest/"+f.Ref()); err != nil {
			t.Fatal(err)
		}
		pulls[i] = s.layerDirs(t, "localhost/cargotest/"+f.Ref())
	}
	top := func(i int) map[string]node { return snapshot(t, pulls[i][1].diff) }
	if diffs := (comparison{ours: top(0), theirs: top(1), started: started}).diffs(); len(diffs) > 0 {
		t.Fatalf("two pulls differ: %v", diffs)
	}

	changed := filepath.Join(pulls[0][1].diff, "xattr")
	for _, change := range []error{
		os.Chmod(filepath.Join(changed, "cap"), 0o700),
		os.Lchown(filepath.Join(changed, "acl"), 1, 2),
		os.WriteFile(filepath.Join(changed, "binary"), []byte("other"), 0o644),
		system.Lsetxattr(filepath.Join(changed, "several"), "user.a", []byte("changed"), 0),
	} {
		if change != nil {
			t.Fatal(change)
		}
	}
	want := []string{
		`"xattr/acl": uid: cargohold 1, storage library 0`,
		`"xattr/acl": gid: cargohold 2, storage library 0`,
		`"xattr/binary": size: cargohold 5, storage library 7`,
		`"xattr/binary": content sha256:`,
		`"xattr/binary": mtime: cargohold ` + time.Now().UTC().Format("2006-"), // rewritten now
		`"xattr/cap": mode: cargohold 0700, storage library 0755`,
		`"xattr/several": xattr user.a: cargohold "changed", storage library "1"`,
	}
	got := comparison{ours: top(0), theirs: top(1), started: started}.diffs()
	if len(got) != len(want) {
		t.Errorf("found %d differences, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range min(len(got), len(want)) {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("difference %d: %s, want %s…", i, got[i], want[i])
		}
	}
}
