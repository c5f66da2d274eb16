package testimage

import (
	"archive/tar"
	"fmt"
	"strings"
	"time"
)

// The differential corpus (issue 14): layers holding legitimate but unusual content, to publish
// with cargohold and pull with Podman (or the storage library) and compare the trees. Each case
// keeps its files under a top directory named after it, so a difference names its case by path.

// CorpusCase is one kind of unusual content and the layers that hold it.
type CorpusCase struct {
	Name string
	// Layers are the case's layers, each stacked on the ones before. Corpus merges the i-th layer
	// of every case into one layer; each case's layer starts with its top directory's entry.
	Layers []Layer
	// Alone cases are about layers themselves (an empty layer, the same layer twice): Corpus
	// appends their layers as they are, after the merged ones.
	Alone bool
	// Refused says why the storage library (so Podman) refuses the case's image; Corpus leaves
	// such cases out, and cargohold must refuse them too.
	Refused string
}

// CorpusCases is the corpus. Paths are relative to the case's top directory.
func CorpusCases() []CorpusCase {
	return []CorpusCase{
		rootEntryCase(),
		replaceCase(),
		whiteoutCase(),
		opaqueCase(),
		hardlinkCase(),
		xattrCase(),
		deviceCase(),
		specialDirCase(),
		nameCase(),
		ownerCase(),
		mtimeCase(),
		formatCase(),
		{Name: "trailing-garbage", Layers: []Layer{{
			Entries: []Entry{File("f", 0o644, "the tar stream goes on after its end\n")},
			Trailer: []byte("garbage after the end-of-archive blocks\n"),
		}}},
		{Name: "gnu-sparse", Refused: "unhandled tar header type 83: the storage library has no case for old-GNU sparse entries",
			Layers: []Layer{{Entries: []Entry{GNUSparseFile("gnu-sparse/file", 0o644, 3<<20,
				SparseChunk{Offset: 0, Data: "head"}, SparseChunk{Offset: 1 << 20, Data: strings.Repeat("m", 5000)})}}}},
		{Name: "hardlink-to-lower", Refused: "a hard link's target must be in the same layer: the storage library links within the layer's own diff",
			Layers: []Layer{{Entries: []Entry{File("f", 0o644, "layer 1\n")}}, {Entries: []Entry{Hardlink("link", "f")}}}},
		{Name: "empty-layer", Alone: true, Layers: []Layer{{CreatedBy: "testimage: corpus empty layer"}}},
		{Name: "duplicate-layer", Alone: true, Layers: []Layer{dupLayer(), dupLayer()}},
	}
}

// Corpus is the corpus image: a busybox base (so readers can run it), the cases' merged layers
// (the first also has /compression, naming c), then the Alone cases' layers, all compressed with c.
func Corpus(busybox []byte, c Compression) Image {
	var merged, alone []Layer
	for _, cs := range CorpusCases() {
		for i, l := range caseLayers(cs) {
			switch {
			case cs.Refused != "":
				continue
			case cs.Alone:
				alone = append(alone, l)
				continue
			case i == len(merged):
				merged = append(merged, Layer{CreatedBy: fmt.Sprintf("testimage: corpus layer %d", i+1)})
			}
			merged[i].Entries = append(merged[i].Entries, l.Entries...)
			merged[i].Trailer = append(merged[i].Trailer, l.Trailer...)
		}
	}
	// As in the app images: naming the compression gives each variant its own diff IDs, so a reader
	// that pulls both unpacks both.
	merged[0].Entries = append(merged[0].Entries, File("compression", 0o644, c.String()+"\n"))
	layers := append(append([]Layer{BaseLayer(busybox, c)}, merged...), alone...)
	for i := range layers {
		layers[i].Compression = c
	}
	return Image{Cmd: []string{"/bin/sh"}, Layers: layers}
}

// CaseImage is the image of one case alone: the busybox base and the case's layers.
func CaseImage(busybox []byte, cs CorpusCase, c Compression) Image {
	layers := append([]Layer{BaseLayer(busybox, c)}, caseLayers(cs)...)
	for i := range layers {
		layers[i].Compression = c
	}
	return Image{Cmd: []string{"/bin/sh"}, Layers: layers}
}

// CorpusBigFiles is the number of files in corpus-big's one layer.
const CorpusBigFiles = 50_000

// CorpusBig is the busybox base and one layer of CorpusBigFiles small files in 50 directories.
func CorpusBig(busybox []byte, c Compression) Image {
	es := []Entry{Dir("big", 0o755)}
	const perDir = 1000
	for i := range CorpusBigFiles {
		if i%perDir == 0 {
			es = append(es, Dir(fmt.Sprintf("big/d%02d", i/perDir), 0o755))
		}
		es = append(es, File(fmt.Sprintf("big/d%02d/f%05d", i/perDir, i), 0o644, fmt.Sprintf("%d\n", i)))
	}
	return Image{Cmd: []string{"/bin/sh"}, Layers: []Layer{
		BaseLayer(busybox, c),
		{Compression: c, CreatedBy: "testimage: 50,000 files", Entries: es},
	}}
}

// caseLayers are cs's layers with its paths put under its top directory, whose entry each
// non-empty layer has first (after a "./" entry, which stays first as tar programs write it).
func caseLayers(cs CorpusCase) []Layer {
	out := make([]Layer, len(cs.Layers))
	for i, l := range cs.Layers {
		out[i] = l
		out[i].Entries = nil
		if len(l.Entries) == 0 {
			continue
		}
		rest := l.Entries
		if rest[0].Header.Name == "./" {
			out[i].Entries, rest = rest[:1], rest[1:]
		}
		out[i].Entries = append(out[i].Entries, Dir(cs.Name, 0o755))
		for _, e := range rest {
			out[i].Entries = append(out[i].Entries, underDir(cs.Name, e))
		}
	}
	return out
}

// underDir moves e into dir. Global headers name no file, and crafted (Raw) entries are made with
// their full path. Hard link targets move too: they name an entry of the same layer.
func underDir(dir string, e Entry) Entry {
	h := e.Header
	if e.Raw != nil || h.Typeflag == tar.TypeXGlobalHeader {
		return e
	}
	e.Header.Name = dir + "/" + h.Name
	if h.Typeflag == tar.TypeLink {
		e.Header.Linkname = dir + "/" + h.Linkname
	}
	return e
}

func at(e Entry, t time.Time) Entry {
	e.Header.ModTime = t
	return e
}

func withFormat(e Entry, f tar.Format) Entry {
	e.Header.Format = f
	return e
}

// rootEntryCase: "./" entries (a tarball made from a `mktemp -d` root, mode 0700) in two layers.
// Podman ignores them: the layer root keeps the storage library's mode.
func rootEntryCase() CorpusCase {
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	return CorpusCase{Name: "root-entry", Layers: []Layer{
		{Entries: []Entry{at(Dir("./", 0o700), old).Owner(1000, 1000), File("f", 0o644, "root entry 0700\n")}},
		{Entries: []Entry{at(Dir("./", 0o750), old), File("g", 0o644, "root entry 0750\n")}},
	}}
}

// replaceCase: a file becomes a directory and back, a symlink becomes a directory and back.
func replaceCase() CorpusCase {
	return CorpusCase{Name: "replace", Layers: []Layer{
		{Entries: []Entry{
			File("file-to-dir", 0o644, "a file in layer 1\n"),
			Dir("dir-to-file", 0o755), File("dir-to-file/inner", 0o644, "inner\n"),
			Symlink("link-to-dir", "file-to-dir"),
			Dir("dir-to-link", 0o755), File("dir-to-link/inner", 0o644, "inner\n"),
		}},
		{Entries: []Entry{
			Dir("file-to-dir", 0o700), File("file-to-dir/inner", 0o644, "a dir in layer 2\n"),
			File("dir-to-file", 0o600, "a file in layer 2\n"),
			Dir("link-to-dir", 0o755), File("link-to-dir/inner", 0o644, "a dir in layer 2\n"),
			Symlink("dir-to-link", "link-to-dir"),
		}},
	}}
}

// whiteoutCase: whiteouts of paths that never existed, one in a directory that never existed, and
// an opaque marker in a new directory.
func whiteoutCase() CorpusCase {
	return CorpusCase{Name: "whiteout", Layers: []Layer{
		{Entries: []Entry{File("kept", 0o644, "kept\n")}},
		{Entries: []Entry{
			Whiteout("never-existed"),
			Whiteout("no-such-dir/never-existed"),
			Dir("new-opaque", 0o755), Opaque("new-opaque"), File("new-opaque/f", 0o644, "f\n"),
		}},
	}}
}

// opaqueCase: opaque directories at depths 1 to 4, and one deleted and re-created (with its opaque
// marker) in the same layer.
func opaqueCase() CorpusCase {
	return CorpusCase{Name: "opaque", Layers: []Layer{
		{Entries: []Entry{
			Dir("a", 0o755), File("a/x", 0o644, "x\n"),
			Dir("a/b", 0o755), File("a/b/y", 0o644, "y\n"),
			Dir("a/b/c", 0o755), File("a/b/c/z", 0o644, "z\n"),
			Dir("a/b/c/d", 0o755), File("a/b/c/d/w", 0o644, "w\n"),
			Dir("again", 0o755), File("again/old", 0o644, "old\n"), Dir("again/sub", 0o755), File("again/sub/old", 0o644, "old\n"),
		}},
		{Entries: []Entry{
			Dir("a", 0o755), Dir("a/b", 0o755), Opaque("a/b"), File("a/b/new2", 0o644, "layer 2\n"),
			Dir("a/b/c", 0o755), Dir("a/b/c/d", 0o755), Opaque("a/b/c/d"), File("a/b/c/d/new2", 0o644, "layer 2\n"),
			Whiteout("again"), Dir("again", 0o750), Opaque("again"), File("again/new", 0o644, "re-created\n"),
		}},
		{Entries: []Entry{
			Dir("a", 0o755), Opaque("a"), File("a/new3", 0o644, "layer 3\n"),
		}},
	}}
}

// hardlinkCase: hard links to a setuid file, to a file with a capability, to a symlink, across
// directories, and to files of another owner (GNU tar gives a link its target's owner).
func hardlinkCase() CorpusCase {
	// GNU tar writes a link's header from the same inode as its target: same mode and owner.
	link := func(name, target string, mode int64, uid int) Entry {
		l := Hardlink(name, target).Owner(uid, uid)
		l.Header.Mode = mode
		return l
	}
	return CorpusCase{Name: "hardlink", Layers: []Layer{{Entries: []Entry{
		Dir("bin", 0o755),
		File("bin/suid", 0o4755, smallTool), link("bin/suid-link", "bin/suid", 0o4755, 0),
		File("bin/cap", 0o755, smallTool).Xattr("security.capability", CapNetBindService), link("bin/cap-link", "bin/cap", 0o755, 0),
		File("bin/user-suid", 0o6755, smallTool).Owner(1000, 1000), link("bin/user-suid-link", "bin/user-suid", 0o6755, 1000),
		File("bin/user-cap", 0o750, smallTool).Owner(1000, 1000).Xattr("security.capability", CapNetBindService),
		link("bin/user-cap-link", "bin/user-cap", 0o750, 1000),
		at(Symlink("symlink", "bin/suid"), time.Date(2005, 1, 1, 0, 0, 0, 0, time.UTC)), link("symlink-link", "symlink", 0o777, 0),
		Dir("other", 0o755), link("other/across", "bin/suid", 0o4755, 0), link("other/across2", "bin/cap", 0o755, 0),
		File("three", 0o644, "three names\n"), link("other/three-b", "three", 0o644, 0), link("three-c", "three", 0o644, 0),
	}}}}
}

// aclUser1000 is a system.posix_acl_access value (struct posix_acl_xattr_header, version 2, then
// entries of tag, perm, id): user::rw- user:1000:r-- group::r-- mask::r-- other::r--.
var aclUser1000 = []byte{
	2, 0, 0, 0,
	0x01, 0, 6, 0, 0xff, 0xff, 0xff, 0xff, // ACL_USER_OBJ rw-
	0x02, 0, 4, 0, 0xe8, 0x03, 0, 0, // ACL_USER 1000 r--
	0x04, 0, 4, 0, 0xff, 0xff, 0xff, 0xff, // ACL_GROUP_OBJ r--
	0x10, 0, 4, 0, 0xff, 0xff, 0xff, 0xff, // ACL_MASK r--
	0x20, 0, 4, 0, 0xff, 0xff, 0xff, 0xff, // ACL_OTHER r--
}

// xattrCase: a file capability, POSIX ACLs, binary and empty-valued attributes.
func xattrCase() CorpusCase {
	return CorpusCase{Name: "xattr", Layers: []Layer{{Entries: []Entry{
		File("cap", 0o755, smallTool).Xattr("security.capability", CapNetBindService),
		File("acl", 0o644, "acl\n").Xattr("system.posix_acl_access", aclUser1000),
		Dir("acl-dir", 0o755).Xattr("system.posix_acl_access", aclUser1000).Xattr("system.posix_acl_default", aclUser1000),
		File("binary", 0o644, "binary\n").Xattr("user.binary", []byte{0, 1, 0xfe, 0xff, '\n', 0}),
		File("empty", 0o644, "empty\n").Xattr("user.empty", nil),
		File("several", 0o644, "several\n").Xattr("user.a", []byte("1")).Xattr("user.b", []byte("2")).Xattr("trusted.t", []byte("3")),
	}}}}
}

// deviceCase: character and block devices (small and large numbers) and FIFOs.
func deviceCase() CorpusCase {
	return CorpusCase{Name: "device", Layers: []Layer{{Entries: []Entry{
		CharDevice("null", 0o666, 1, 3),
		CharDevice("tty", 0o620, 5, 0).Owner(0, 5),
		BlockDevice("loop0", 0o660, 7, 0).Owner(0, 6),
		BlockDevice("large", 0o600, 4095, 1048575),
		Fifo("fifo", 0o644),
		Fifo("fifo-sticky", 0o1600),
	}}}}
}

// specialDirCase: setgid, sticky and mode-0 directories, and implicit parent directories (no
// entry of their own) under a setgid directory.
func specialDirCase() CorpusCase {
	return CorpusCase{Name: "special-dir", Layers: []Layer{{Entries: []Entry{
		Dir("setgid", 0o2775).Owner(0, 50), File("setgid/f", 0o664, "f\n").Owner(0, 50),
		File("setgid/implicit/deeper/f", 0o644, "parents without entries\n"),
		Dir("sticky", 0o1777),
		Dir("all-bits", 0o7777),
		Dir("no-perm", 0o000), File("no-perm/f", 0o644, "in a mode-0 dir\n"),
		File("implicit/parent/f", 0o644, "parents without entries\n"),
	}}}}
}

// nameCase: spaces, newline, tab, backslash, non-UTF-8 bytes, UTF-8, a leading dash, 255-byte
// names (file, directory, symlink target) and a deep path of over 2,000 bytes.
func nameCase() CorpusCase {
	long := strings.Repeat("n", 255)
	var deep strings.Builder
	for i := range 40 {
		fmt.Fprintf(&deep, "%02d-%s/", i, strings.Repeat("d", 46))
	}
	return CorpusCase{Name: "name", Layers: []Layer{{Entries: []Entry{
		File("with space", 0o644, "space\n"),
		File("new\nline", 0o644, "newline\n"),
		File("tab\tname", 0o644, "tab\n"),
		File(`back\slash`, 0o644, "backslash\n"),
		File("bad-utf8-\xff\xfe", 0o644, "not UTF-8\n"),
		File("ünïcödé-名前", 0o644, "UTF-8\n"),
		File("-dash", 0o644, "dash\n"),
		File(long, 0o644, "255 bytes\n"),
		Symlink("link-to-long", long),
		Dir(strings.Repeat("D", 255), 0o755), File(strings.Repeat("D", 255)+"/f", 0o644, "in a 255-byte dir\n"),
		File(deep.String()+long, 0o644, "deep\n"),
	}}}}
}

// ownerCase: extreme owners: the largest uid/gid (2^32-2), nobody, one past the 7-digit octal
// field (needs PAX or base-256), and a dir of another owner.
func ownerCase() CorpusCase {
	return CorpusCase{Name: "owner", Layers: []Layer{{Entries: []Entry{
		File("max", 0o644, "max\n").Owner(4294967294, 4294967294),
		File("nobody", 0o644, "nobody\n").Owner(65534, 65534),
		File("big-octal", 0o644, "2^21\n").Owner(1<<21, 1<<21),
		withFormat(File("big-gnu", 0o644, "2^21 base-256\n").Owner(1<<21, 1<<21), tar.FormatGNU),
		Dir("dir", 0o700).Owner(4294967294, 0), File("dir/f", 0o600, "f\n").Owner(4294967294, 0),
	}}}}
}

// mtimeCase: mtimes before 1970, at 0, with nanoseconds, after 2262 (beyond int64 nanoseconds),
// in year 9999, on a directory, a symlink and a device.
func mtimeCase() CorpusCase {
	pre := time.Date(1960, 7, 20, 20, 17, 0, 0, time.UTC)
	post := time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)
	return CorpusCase{Name: "mtime", Layers: []Layer{{Entries: []Entry{
		at(File("pre-1970", 0o644, "1960\n"), pre),
		at(File("epoch", 0o644, "0\n"), time.Unix(0, 0)),
		at(withFormat(File("nanoseconds", 0o644, "ns\n"), tar.FormatPAX), time.Date(2020, 1, 2, 3, 4, 5, 123456789, time.UTC)),
		at(File("post-2262", 0o644, "2300\n"), post),
		at(File("year-9999", 0o644, "9999\n"), time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)),
		at(Symlink("link-pre-1970", "pre-1970"), pre),
		at(Fifo("fifo-post-2262", 0o644), post),
		at(Dir("dir-pre-1970", 0o755), pre),
		at(Dir("dir-post-2262", 0o755), post),
	}}}}
}

// formatCase: PAX and GNU long names and link names, V7 headers, a global PAX header and a file of
// zero runs (old-GNU sparse entries are the gnu-sparse case: the storage library refuses them).
func formatCase() CorpusCase {
	const dir = "format/"
	long := strings.Repeat("long-name-", 15)
	return CorpusCase{Name: "format", Layers: []Layer{{Entries: []Entry{
		{Header: tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header", PAXRecords: map[string]string{"comment": "corpus global header"}}},
		withFormat(File("pax-"+long, 0o644, "PAX long name\n"), tar.FormatPAX),
		withFormat(File("gnu-"+long, 0o644, "GNU long name\n"), tar.FormatGNU),
		withFormat(Symlink("pax-long-link", long+"pax-target"), tar.FormatPAX),
		withFormat(Symlink("gnu-long-link", long+"gnu-target"), tar.FormatGNU),
		V7File(dir+"v7-dir/", 0o755, ""),
		V7File(dir+"v7-dir/v7-file", 0o640, "written by a V7 tar\n"),
		SparseFile("zero-runs", 0o644, 4<<20, 2<<20, []byte("MIDDLE")),
	}}}}
}

// dupLayer is the layer the duplicate-layer case has twice: same bytes, same diff ID.
func dupLayer() Layer {
	return Layer{CreatedBy: "testimage: corpus duplicate layer", Entries: []Entry{
		File("f", 0o644, "twice\n"),
	}}
}

// CorpusFixtures are the corpus images for the e2e suites and the Podman matrix (mkimages writes
// them only when asked by name: corpus-big is slow to push and pull):
//
//	corpus:1       gzip: base + the cases' merged layers + an empty layer + one layer twice
//	corpus-zstd:1  the same layers compressed with zstd (same diff IDs)
//	corpus-big:1   gzip: base + one layer of 50,000 files
func CorpusFixtures(busybox []byte) []Fixture {
	return []Fixture{
		{Name: "corpus", Tag: "1", Image: Corpus(busybox, Gzip)},
		{Name: "corpus-zstd", Tag: "1", Image: Corpus(busybox, Zstd)},
		{Name: "corpus-big", Tag: "1", Image: CorpusBig(busybox, Gzip)},
	}
}
