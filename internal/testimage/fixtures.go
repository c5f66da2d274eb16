package testimage

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
)

// The e2e fixture set. Every image starts with the same busybox base layer;
// the "app" images then add layers that exercise each kind of tar entry a
// store must reproduce. The contents below are what scripts/e2e expects
// (it reads the digests from the fixtures.json that mkimages writes).
const (
	KeepV1     = "keep: version 1\n"
	KeepV3     = "keep: changed in layer 3\n"
	SparseSize = 256 << 20 // /data/sparse.img: 256 MiB of zeros ...
	SparseAt   = 128 << 20 // ... with SparseData written at 128 MiB
	SparseData = "MIDDLE"
	OwnerUID   = 1000 // owner of /home/user/owned.txt
)

// CapNetBindService is the security.capability xattr value that
// `setcap cap_net_bind_service+ep` writes: a VFS_CAP_REVISION_2 vfs_cap_data
// (magic|effective, then permitted/inheritable words) with bit 10 permitted.
var CapNetBindService = []byte{
	0x01, 0x00, 0x00, 0x02, // magic_etc: revision 2, effective flag
	0x00, 0x04, 0x00, 0x00, // permitted[0]: 1<<10 = CAP_NET_BIND_SERVICE
	0x00, 0x00, 0x00, 0x00, // inheritable[0]
	0x00, 0x00, 0x00, 0x00, // permitted[1]
	0x00, 0x00, 0x00, 0x00, // inheritable[1]
}

// BusyboxApplets get a symlink in /bin to /bin/busybox in the base layer.
var BusyboxApplets = []string{
	"sh", "ls", "cat", "stat", "echo", "test", "[", "readlink", "id", "wc",
	"sha256sum", "md5sum", "head", "tr", "find", "du", "env", "true", "false", "sleep",
}

// smallTool is the body of /usr/bin/suidtool and /usr/bin/captool.
const smallTool = "#!/bin/sh\necho \"I am $0\"\n"

// BaseLayer is a minimal busybox userland: /bin/busybox (the given static
// binary) with applet symlinks, /etc/passwd and /etc/group naming root and
// user 1000, /etc/shadow 0640 root:shadow(42).
func BaseLayer(busybox []byte, c Compression) Layer {
	es := []Entry{
		Dir("bin", 0o755),
		BinaryFile("bin/busybox", 0o755, busybox),
	}
	for _, a := range BusyboxApplets {
		es = append(es, Symlink("bin/"+a, "busybox"))
	}
	es = append(es,
		Dir("etc", 0o755),
		File("etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\n"+
			"user:x:1000:1000:user:/home/user:/bin/sh\n"+
			"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
		File("etc/group", 0o644, "root:x:0:\nshadow:x:42:\nuser:x:1000:\nnogroup:x:65534:\n"),
		File("etc/shadow", 0o640, "root:*:19000:0:99999:7:::\nuser:*:19000:0:99999:7:::\n").Owner(0, 42),
		Dir("home", 0o755),
		Dir("root", 0o700),
		Dir("tmp", 0o1777),
	)
	return Layer{Entries: es, Compression: c, CreatedBy: "testimage: busybox base"}
}

// AppLayer2 adds the files layer 3 changes, plus one of every entry kind:
// hardlink pair, setuid file, file capability (PAX xattr), file of another
// owner, FIFO, symlink. /data/compression names c, so the layer's diff ID
// (and so its chain ID) differs per compression: each app image's upper
// layers are unpacked from their own blobs.
func AppLayer2(c Compression) Layer {
	return Layer{Compression: c, CreatedBy: "testimage: app layer 2 (entry kinds)", Entries: []Entry{
		Dir("data", 0o755),
		File("data/compression", 0o644, c.String()+"\n"),
		File("data/keep.txt", 0o644, KeepV1),
		File("data/deleted.txt", 0o644, "layer 3 deletes me\n"),
		Dir("data/opq", 0o755),
		File("data/opq/old1", 0o644, "old1\n"),
		File("data/opq/old2", 0o644, "old2\n"),
		File("data/hard1", 0o644, "one inode, two names\n"),
		Hardlink("data/hard2", "data/hard1"),
		Fifo("data/fifo", 0o644),
		Symlink("data/link", "keep.txt"),
		Dir("usr", 0o755),
		Dir("usr/bin", 0o755),
		File("usr/bin/suidtool", 0o4755, smallTool),
		File("usr/bin/captool", 0o755, smallTool).Xattr("security.capability", CapNetBindService),
		Dir("home", 0o755),
		Dir("home/user", 0o755).Owner(OwnerUID, OwnerUID),
		File("home/user/owned.txt", 0o600, "private to user 1000\n").Owner(OwnerUID, OwnerUID),
	}}
}

// AppLayer3 changes layer 2's files: a whiteout (deleted.txt), an opaque
// directory (opq keeps only "new"), a changed file (keep.txt) and a big file
// that is almost all zeros (sparse.img).
func AppLayer3(c Compression) Layer {
	return Layer{Compression: c, CreatedBy: "testimage: app layer 3 (whiteouts, opaque dir, sparse file)", Entries: []Entry{
		Dir("data", 0o755),
		Whiteout("data/deleted.txt"),
		File("data/keep.txt", 0o644, KeepV3),
		Dir("data/opq", 0o755),
		Opaque("data/opq"),
		File("data/opq/new", 0o644, "new\n"),
		SparseImg(),
	}}
}

// SparseImg is layer 3's /data/sparse.img.
func SparseImg() Entry {
	return SparseFile("data/sparse.img", 0o644, SparseSize, SparseAt, []byte(SparseData))
}

// Fixture is one image of the e2e set: the layout directory Name (also the
// repository name under cargotest/ in the registry) and Tag.
type Fixture struct {
	Name  string
	Tag   string
	Image Image
	// Platforms, when set, makes the fixture a multi-platform image: an image index of these
	// images (Image is then unused).
	Platforms []Image
	// Files maps paths inside the image to the sha256 of their content, for
	// checks from inside a running container.
	Files map[string]string
}

// Ref is "name:tag".
func (f Fixture) Ref() string { return f.Name + ":" + f.Tag }

// WriteFixtureLayouts writes the Fixtures of the given names (every tag of each) as OCI layouts
// dir/NAME, for tests that publish "oci:dir/NAME:TAG" without a registry.
func WriteFixtureLayouts(dir string, busybox []byte, names ...string) error {
	for _, f := range Fixtures(busybox) {
		if !slices.Contains(names, f.Name) {
			continue
		}
		var err error
		if f.Platforms != nil {
			_, _, err = WriteMultiPlatform(filepath.Join(dir, f.Name), f.Tag, f.Platforms)
		} else {
			_, err = WriteLayout(filepath.Join(dir, f.Name), f.Tag, f.Image)
		}
		if err != nil {
			return fmt.Errorf("fixture %s: %w", f.Ref(), err)
		}
	}
	return nil
}

// Fixtures is the e2e set (see DEVELOPERS.md and scripts/e2e):
//
//	app:1       gzip: base + layer 2 + layer 3
//	app-zstd:1  the same layers compressed with zstd
//	plain:1     the same layers uncompressed
//	other:1     gzip: the same base blob as app:1 + one small layer
//	app:2       gzip: base + /data/version = 2 (for moving app:latest)
//	multi:1     an image index: linux/amd64 and linux/arm64, each base + /data/arch
//	hello:1     gzip: base + /etc/motd, Cmd cat /etc/motd (the quickstart's)
func Fixtures(busybox []byte) []Fixture {
	appFiles := map[string]string{
		"/data/keep.txt":   sha256Hex(strings.NewReader(KeepV3)),
		"/data/sparse.img": EntrySHA256(SparseImg()),
		"/bin/busybox":     sha256Hex(strings.NewReader(string(busybox))),
	}
	app := func(c Compression) Image {
		return Image{
			Cmd:    []string{"/bin/sh"},
			Layers: []Layer{BaseLayer(busybox, c), AppLayer2(c), AppLayer3(c)},
		}
	}
	return []Fixture{
		{Name: "app", Tag: "1", Image: app(Gzip), Files: appFiles},
		{Name: "app-zstd", Tag: "1", Image: app(Zstd), Files: appFiles},
		{Name: "plain", Tag: "1", Image: app(Uncompressed), Files: appFiles},
		{Name: "other", Tag: "1", Image: Image{
			Cmd: []string{"/bin/cat", "/data/other.txt"},
			Layers: []Layer{BaseLayer(busybox, Gzip), {Compression: Gzip, CreatedBy: "testimage: other", Entries: []Entry{
				Dir("data", 0o755),
				File("data/other.txt", 0o644, "other image\n"),
			}}},
		}},
		{Name: "app", Tag: "2", Image: Image{
			Cmd: []string{"/bin/cat", "/data/version"},
			Layers: []Layer{BaseLayer(busybox, Gzip), {Compression: Gzip, CreatedBy: "testimage: app version 2", Entries: []Entry{
				Dir("data", 0o755),
				File("data/version", 0o644, "2\n"),
			}}},
		}},
		{Name: "multi", Tag: "1", Platforms: []Image{MultiPlatformImage(busybox, "amd64"), MultiPlatformImage(busybox, "arm64")}},
		{Name: "hello", Tag: "1", Image: Image{
			Cmd: []string{"/bin/cat", "/etc/motd"},
			Layers: []Layer{BaseLayer(busybox, Gzip), {Compression: Gzip, CreatedBy: "testimage: hello", Entries: []Entry{
				Dir("etc", 0o755),
				File("etc/motd", 0o644, "Hello from a cargohold store: this image ran without a pull.\n"),
			}}},
		}},
	}
}

// MultiPlatformImage is one platform's image of the multi:1 fixture: /data/arch names its
// architecture (only the host's can run, the others are told apart by that file and the config).
func MultiPlatformImage(busybox []byte, arch string) Image {
	return Image{
		Architecture: arch,
		Cmd:          []string{"/bin/cat", "/data/arch"},
		Layers: []Layer{BaseLayer(busybox, Gzip), {Compression: Gzip, CreatedBy: "testimage: " + arch, Entries: []Entry{
			Dir("data", 0o755),
			File("data/arch", 0o644, arch+"\n"),
		}}},
	}
}

// EntrySHA256 is the hex sha256 of a regular file entry's content.
func EntrySHA256(e Entry) string {
	if e.Body != nil {
		return sha256Hex(e.Body())
	}
	return sha256Hex(strings.NewReader(string(e.Data)))
}

func sha256Hex(r io.Reader) string {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		panic(err) // only in-memory readers reach here
	}
	return hex.EncodeToString(h.Sum(nil))
}
