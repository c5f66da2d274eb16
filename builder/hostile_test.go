package builder

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cargohold/cargohold/internal/testenv"
	"github.com/cargohold/cargohold/internal/testimage"
	"github.com/cargohold/cargohold/layout"
	digest "github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/storage"
	"golang.org/x/sys/unix"
)

// The hostile corpus: images crafted the way a malicious or broken registry could serve them, each
// published into a store that already holds a good image. Every rejected one must fail with an error
// naming the image and the entry (or blob) at fault, leave the store byte for byte as it was (and
// readable as Podman reads it), leave no staging dir behind, and write nothing outside the store. The
// "contained" ones are what Podman itself accepts (absolute names, symlinks followed by later
// entries): they are published with every file inside their layer dir, as containers-storage's
// chrooted extraction does.

const (
	hostileGoodName = "localhost/hostile/good:1"
	victimContent   = "the victim outside the store\n"
)

// hostileEnv is a scratch dir with the store, a victim dir beside it and the crafted layouts.
type hostileEnv struct {
	root, store, outside, layouts string
}

func newHostileEnv(t *testing.T) *hostileEnv { return newHostileEnvIn(t, t.TempDir()) }

func newHostileEnvIn(t *testing.T, root string) *hostileEnv {
	e := &hostileEnv{root: root, store: filepath.Join(root, "store"), outside: filepath.Join(root, "outside"),
		layouts: filepath.Join(root, "layouts")}
	for _, d := range []string{e.outside, e.layouts} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(e.outside, "victim"), []byte(victimContent), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// checkOutside: the scratch dir holds only what the test made, the victim is untouched.
func (e *hostileEnv) checkOutside(t *testing.T) {
	t.Helper()
	if names := dirNames(t, e.root); !slices.Equal(names, []string{"layouts", "outside", "store"}) {
		t.Errorf("the store's parent holds %v, want only layouts, outside and store", names)
	}
	if names := dirNames(t, e.outside); !slices.Equal(names, []string{"victim"}) {
		t.Errorf("the dir outside the store holds %v, want only victim", names)
	}
	if data, err := os.ReadFile(filepath.Join(e.outside, "victim")); err != nil || string(data) != victimContent {
		t.Errorf("the victim outside the store was changed: %q, %v", data, err)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// storeState is every path of the store that readers see (not .cargohold/) with its type, mode,
// size and, for regular files, content digest.
func storeState(t *testing.T, dir string) map[string]string {
	t.Helper()
	state := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == ".cargohold" {
			return filepath.SkipDir
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("%v %d", fi.Mode(), fi.Size())
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			desc += " " + hex.EncodeToString(sum[:])
		}
		state[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return state
}

func diffState(before, after map[string]string) []string {
	var diffs []string
	for p, b := range before {
		if a, ok := after[p]; !ok {
			diffs = append(diffs, "removed "+p)
		} else if a != b {
			diffs = append(diffs, fmt.Sprintf("changed %s: %s -> %s", p, b, a))
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			diffs = append(diffs, "added "+p)
		}
	}
	slices.Sort(diffs)
	if len(diffs) > 8 {
		diffs = append(diffs[:8], fmt.Sprintf("and %d more", len(diffs)-8))
	}
	return diffs
}

// checkStore: the store passes cargohold check (as Podman reads it) and holds no staging dir.
func checkStore(t *testing.T, dir string, deep bool) {
	t.Helper()
	r, err := layout.Check(t.Context(), dir, layout.CheckOptions{Deep: deep})
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() {
		t.Errorf("the store has problems: %v", r.Problems)
	}
	if names := dirNames(t, filepath.Join(dir, ".cargohold", "staging")); len(names) > 0 {
		t.Errorf("staging dirs left behind: %v", names)
	}
}

// goodBase is the base layer of the good image; hostile images stand on it too, so it is in the
// store already and only their hostile layer is fetched.
func goodBase() testimage.Layer { return testimage.BaseLayer(fakeBusybox, testimage.Gzip) }

func onBase(c testimage.Compression, entries ...testimage.Entry) testimage.Image {
	return testimage.Image{Layers: []testimage.Layer{goodBase(), {Compression: c, Entries: entries}}}
}

type hostileCase struct {
	name string
	// image is the crafted image; craft, if set, then damages the layout (w describes what
	// WriteLayout wrote).
	image func(e *hostileEnv) testimage.Image
	craft func(t *testing.T, dir string, w testimage.Written)
	// maxLayerSize is the publish's --max-layer-size.
	maxLayerSize int64
	// want are substrings of the error besides the image's own reference; none for a contained case.
	want []string
	// contained checks a published hostile image: where its files landed.
	contained func(t *testing.T, e *hostileEnv, w testimage.Written)
}

func hostileCases() []hostileCase {
	tamperLayer := func(c testimage.Compression, cut func([]byte) []byte) func(t *testing.T, dir string, w testimage.Written) {
		return func(t *testing.T, dir string, w testimage.Written) {
			blob, err := os.ReadFile(testimage.BlobPath(dir, w.Layers[1].Digest))
			if err != nil {
				t.Fatal(err)
			}
			desc, err := testimage.AddBlob(dir, cut(blob))
			if err != nil {
				t.Fatal(err)
			}
			desc.MediaType = c.MediaType()
			if _, _, err := testimage.EditImage(dir, "1", func(m *v1.Manifest, _ *v1.Image) { m.Layers[1] = desc }); err != nil {
				t.Fatal(err)
			}
		}
	}
	half := func(b []byte) []byte { return b[:len(b)/2] }
	editConfig := func(edit func(c *v1.Image)) func(t *testing.T, dir string, w testimage.Written) {
		return func(t *testing.T, dir string, w testimage.Written) {
			if _, _, err := testimage.EditImage(dir, "1", func(_ *v1.Manifest, c *v1.Image) { edit(c) }); err != nil {
				t.Fatal(err)
			}
		}
	}
	many := func(n int, size int64) []testimage.Entry {
		var es []testimage.Entry
		for i := range n {
			es = append(es, testimage.SparseFile(fmt.Sprintf("zeros/%02d", i), 0o644, size, 0, nil))
		}
		return es
	}
	file := testimage.File
	return []hostileCase{
		{name: "dotdot-traversal",
			image: func(*hostileEnv) testimage.Image {
				return onBase(testimage.Gzip, file("../../outside/pwned", 0o644, "p"))
			},
			want: []string{`layer entry "../../outside/pwned"`, "escapes the layer directory"}},
		{name: "dotdot-in-the-middle",
			image: func(*hostileEnv) testimage.Image {
				return onBase(testimage.Gzip, file("etc/../../../outside/victim", 0o644, "p"))
			},
			want: []string{`layer entry "etc/../../../outside/victim"`, "escapes the layer directory"}},
		{name: "hardlink-to-outside",
			image: func(*hostileEnv) testimage.Image {
				return onBase(testimage.Gzip, testimage.Hardlink("h", "../../outside/victim"))
			},
			want: []string{`layer entry "h"`, "escapes the layer directory"}},
		{name: "hardlink-to-host-file",
			image: func(*hostileEnv) testimage.Image {
				return onBase(testimage.Gzip, testimage.Hardlink("p", "/etc/passwd"))
			},
			want: []string{`layer entry "p"`, "not earlier in the same layer"}},
		{name: "hardlink-to-later-entry",
			image: func(*hostileEnv) testimage.Image {
				return onBase(testimage.Gzip, testimage.Hardlink("early", "late"), file("late", 0o644, ""))
			},
			want: []string{`layer entry "early"`, `hardlink points to "late", which is not earlier in the same layer`}},
		{name: "hardlink-through-symlink",
			image: func(e *hostileEnv) testimage.Image {
				return onBase(testimage.Gzip, testimage.Symlink("o", e.outside), testimage.Hardlink("h", "o/victim"))
			},
			want: []string{`layer entry "h"`, "not earlier in the same layer"}},
		{name: "whiteout-of-dotdot",
			image: func(*hostileEnv) testimage.Image { return onBase(testimage.Gzip, file("etc/.wh...", 0o644, "")) },
			want:  []string{`layer entry "etc/.wh..."`, `invalid whiteout of ".."`}},
		{name: "symlink-loop",
			image: func(*hostileEnv) testimage.Image {
				return onBase(testimage.Gzip, testimage.Symlink("loop1", "loop2"), testimage.Symlink("loop2", "loop1"), file("loop1/x", 0o644, ""))
			},
			want: []string{`layer entry "loop1/x"`, "too many levels of symbolic links"}},
		{name: "duplicate-entry",
			image: func(*hostileEnv) testimage.Image {
				return onBase(testimage.Gzip, file("etc/motd", 0o644, "first"), file("./etc/motd", 0o644, "second"))
			},
			want: []string{`layer entry "./etc/motd"`, "duplicate entry"}},
		{name: "huge-pax-header",
			image: func(*hostileEnv) testimage.Image {
				return testimage.Image{Layers: []testimage.Layer{goodBase(), {Compression: testimage.Gzip, Raw: hugePAXTar()}}}
			},
			want: []string{`the layer entry after "etc/before"`, "header field too long"}},
		{name: "name-too-long",
			image: func(*hostileEnv) testimage.Image {
				return onBase(testimage.Gzip, file("etc/"+strings.Repeat("n", 300), 0o644, ""))
			},
			want: []string{`layer entry "etc/nnnnnnnn`, "file name too long"}},
		{name: "device-number-out-of-range",
			image: func(*hostileEnv) testimage.Image {
				return onBase(testimage.Gzip, testimage.CharDevice("dev/big", 0o600, 1<<12, 0))
			},
			want: []string{`layer entry "dev/big"`, "out of range"}},
		{name: "truncated-gzip",
			image: func(*hostileEnv) testimage.Image {
				return onBase(testimage.Gzip, file("etc/data", 0o644, strings.Repeat("data ", 4000)))
			},
			craft: tamperLayer(testimage.Gzip, half),
			want:  []string{"unexpected EOF"}},
		{name: "truncated-zstd",
			image: func(*hostileEnv) testimage.Image {
				return onBase(testimage.Zstd, file("etc/data", 0o644, strings.Repeat("data ", 4000)))
			},
			craft: tamperLayer(testimage.Zstd, half),
			want:  []string{"unexpected EOF"}},
		{name: "blob-digest-mismatch",
			image: func(*hostileEnv) testimage.Image {
				return onBase(testimage.Gzip, file("etc/motd", 0o644, "original\n"))
			},
			craft: func(t *testing.T, dir string, w testimage.Written) {
				// Same size, other content: what a tampering mirror would serve.
				p := testimage.BlobPath(dir, w.Layers[1].Digest)
				var other bytes.Buffer
				if err := testimage.WriteTar(&other, []testimage.Entry{file("etc/motd", 0o644, "tampered\n")}); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, gzipped(t, other.Bytes()), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"different digest (corrupt blob or tampering)"}},
		{name: "diff-id-mismatch",
			image: func(*hostileEnv) testimage.Image { return onBase(testimage.Gzip, file("etc/motd", 0o644, "hello\n")) },
			craft: editConfig(func(c *v1.Image) { c.RootFS.DiffIDs[1] = digest.FromString("not this layer") }),
			want:  []string{"uncompressed content has digest", "diff_id " + digest.FromString("not this layer").String()}},
		{name: "diff-ids-count",
			image: func(*hostileEnv) testimage.Image { return onBase(testimage.Gzip, file("etc/motd", 0o644, "hello\n")) },
			craft: editConfig(func(c *v1.Image) { c.RootFS.DiffIDs = append(c.RootFS.DiffIDs, digest.FromString("extra")) }),
			want:  []string{"the manifest lists 2 layers but the config", "lists 3 diff_ids"}},
		{name: "missing-blob",
			image: func(*hostileEnv) testimage.Image { return onBase(testimage.Gzip, file("etc/motd", 0o644, "gone\n")) },
			craft: func(t *testing.T, dir string, w testimage.Written) {
				if err := os.Remove(testimage.BlobPath(dir, w.Layers[1].Digest)); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"no such file or directory"}},
		{name: "decompression-bomb",
			// 32 MiB of zeros in 32 files (about 32 KiB of gzip) against an 8 MiB limit: the stream is
			// cut when it passes the limit, whatever the headers say.
			image:        func(*hostileEnv) testimage.Image { return onBase(testimage.Gzip, many(32, 1<<20)...) },
			maxLayerSize: 8 << 20,
			want:         []string{"layer exceeds the size limit", "more than 8388608 uncompressed bytes"}},
		{name: "bomb-in-one-header",
			image:        func(*hostileEnv) testimage.Image { return onBase(testimage.Gzip, many(1, 64<<20)...) },
			maxLayerSize: 8 << 20,
			want:         []string{`layer entry "zeros/00"`, "the entry alone has 67108864 bytes, the limit is 8388608"}},
		{name: "bad-layer-over-a-new-good-one",
			// The new base layer is fine, but the image is not: the good layer must not be recorded.
			image: func(*hostileEnv) testimage.Image {
				return testimage.Image{Layers: []testimage.Layer{
					{Compression: testimage.Gzip, Entries: []testimage.Entry{file("fine", 0o644, "fine\n")}},
					{Compression: testimage.Gzip, Entries: []testimage.Entry{file("../escape", 0o644, "")}},
				}}
			},
			want: []string{`layer entry "../escape"`}},

		// Contained: accepted as Podman accepts them, every file inside the layer.
		{name: "absolute-path",
			image: func(e *hostileEnv) testimage.Image {
				return onBase(testimage.Gzip, file(filepath.Join(e.outside, "victim"), 0o644, "mine\n"))
			},
			contained: func(t *testing.T, e *hostileEnv, w testimage.Written) {
				checkInLayer(t, e, w, filepath.Join(e.outside, "victim"), "mine\n")
			}},
		{name: "symlink-then-file-through-it",
			image: func(e *hostileEnv) testimage.Image {
				return onBase(testimage.Gzip, testimage.Symlink("evil", e.outside), file("evil/victim", 0o644, "mine\n"),
					testimage.Symlink("up", "../../../../.."), file("up/pwned", 0o644, "up\n"))
			},
			contained: func(t *testing.T, e *hostileEnv, w testimage.Written) {
				checkInLayer(t, e, w, filepath.Join(e.outside, "victim"), "mine\n")
				checkInLayer(t, e, w, "pwned", "up\n")
			}},
		// Skipped, as the overlay driver (Podman 4.3 to 5.8) skips any entry that names the layer root.
		{name: "layer-root-as-file",
			image: func(*hostileEnv) testimage.Image { return onBase(testimage.Gzip, file(".", 0o644, "")) },
			contained: func(t *testing.T, e *hostileEnv, w testimage.Written) {
				root := layerDirs(t, e.store, w.Config.Encoded())[1]
				if fi, err := os.Lstat(root); err != nil || fi.Mode() != fs.ModeDir|0o555 {
					t.Errorf("%s: %v, %v; want the layer root as the driver makes it, a 0555 directory", root, fi, err)
				}
			}},
	}
}

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// checkInLayer: the hostile image's top layer holds name (relative to the layer root) with content.
func checkInLayer(t *testing.T, e *hostileEnv, w testimage.Written, name, content string) {
	t.Helper()
	p := filepath.Join(layerDirs(t, e.store, w.Config.Encoded())[1], name)
	if data, err := os.ReadFile(p); err != nil || string(data) != content {
		t.Errorf("%s: %q, %v; want %q inside the layer", p, data, err, content)
	}
}

func TestHostileCorpus(t *testing.T) {
	testenv.RequireRoot(t)
	e := newHostileEnv(t)
	policy := acceptAnythingPolicy(t)
	store, err := layout.OpenWithOptions(t.Context(), e.store, layout.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore(t, store)
	p := &Publisher{Store: store, Options: Options{PolicyPath: policy}}

	good := testimage.Image{Cmd: []string{"/bin/cat", "/etc/motd"}, Layers: []testimage.Layer{goodBase(),
		{Compression: testimage.Gzip, Entries: []testimage.Entry{testimage.Dir("etc", 0o755), testimage.File("etc/motd", 0o644, "good\n")}}}}
	goodDir := filepath.Join(e.layouts, "good")
	if _, err := testimage.WriteLayout(goodDir, "1", good); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, p, "oci:"+goodDir+":1", hostileGoodName)
	before := storeState(t, e.store)

	for _, tc := range hostileCases() {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(e.layouts, tc.name)
			w, err := testimage.WriteLayout(dir, "1", tc.image(e))
			if err != nil {
				t.Fatal(err)
			}
			if tc.craft != nil {
				tc.craft(t, dir, w)
			}
			ref := "oci:" + dir + ":1"
			p.Options.MaxLayerSize = tc.maxLayerSize
			res := p.Publish(context.Background(), Request{Ref: ref, Names: []string{"localhost/hostile/" + tc.name + ":1"}})
			e.checkOutside(t)

			if tc.contained != nil {
				if res.Err != nil {
					t.Fatalf("a layer Podman accepts was refused: %v", res.Err)
				}
				tc.contained(t, e, w)
				after := storeState(t, e.store)
				for path, b := range before {
					if after[path] != b && path != "overlay-images/images.json" && path != "overlay-layers/layers.json" &&
						!strings.HasSuffix(path, ".lock") && path != "overlay" && path != "overlay/l" && path != "overlay-layers" && path != "overlay-images" {
						t.Errorf("publishing changed %s of the images already there: %s -> %s", path, b, after[path])
					}
				}
				checkStore(t, e.store, false)
				// Back to the good store for the next case.
				if _, err := store.Remove(t.Context(), "localhost/hostile/"+tc.name+":1", layout.RemoveOptions{}); err != nil {
					t.Fatal(err)
				}
				if _, err := store.GC(t.Context(), 0, time.Now(), false); err != nil {
					t.Fatal(err)
				}
				before = storeState(t, e.store)
				return
			}

			if res.Err == nil {
				t.Fatalf("published a hostile image (action %s)", res.Action)
			}
			t.Logf("error: %.400s", res.Err)
			msg := res.Err.Error()
			if !strings.Contains(msg, ref) {
				t.Errorf("the error does not name the image %s", ref)
			}
			for _, want := range tc.want {
				if !strings.Contains(msg, want) {
					t.Errorf("the error does not contain %q", want)
				}
			}
			if diffs := diffState(before, storeState(t, e.store)); len(diffs) > 0 {
				t.Errorf("the failed publish changed the store: %v", diffs)
			}
			checkStore(t, e.store, false)
		})
	}
	if n := len(slices.DeleteFunc(hostileCases(), func(c hostileCase) bool { return c.contained != nil })); n < 15 {
		t.Errorf("the corpus has only %d crafted images to reject, want at least 15", n)
	}
	// The good image is still there, whole, as Podman reads it.
	if img, ok := imageNamed(store, hostileGoodName); !ok || img.ID == "" {
		t.Error("the good image lost its name")
	}
	checkStore(t, e.store, true)
}

// An image whose name another image holds takes the name (a store never holds one twice: Podman
// would refuse the whole store); the other image stays, whole, under its other names.
func TestHostileNameCollision(t *testing.T) {
	testenv.RequireRoot(t)
	e := newHostileEnv(t)
	store, err := layout.OpenWithOptions(t.Context(), e.store, layout.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore(t, store)
	p := &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t)}}
	var ids []string
	for i, motd := range []string{"first\n", "second\n"} {
		dir := filepath.Join(e.layouts, fmt.Sprint("img", i))
		if _, err := testimage.WriteLayout(dir, "1", onBase(testimage.Gzip, testimage.File("etc/motd", 0o644, motd))); err != nil {
			t.Fatal(err)
		}
		res := mustPublish(t, p, "oci:"+dir+":1", "localhost/collide:latest", fmt.Sprintf("localhost/own%d:1", i))
		ids = append(ids, res.ImageID)
	}
	owner, ok := imageNamed(store, "localhost/collide:latest")
	if !ok || owner.ID != ids[1] {
		t.Errorf("the contested name is on %s, want the last published image %s", owner.ID, ids[1])
	}
	first, ok := store.Image(ids[0])
	if !ok || !slices.Equal(first.Names, []string{"localhost/own0:1"}) {
		t.Errorf("the first image: %v, %v; want it kept under its own name only", first.Names, ok)
	}
	checkStore(t, e.store, true)
	e.checkOutside(t)
}

// Device nodes (and overlay whiteouts, which are device nodes too) need CAP_MKNOD. Without it the
// publish must fail naming the entry, rather than write a store that differs from the image. The
// test runs itself again through setpriv with CAP_MKNOD dropped.
func TestHostileDeviceNodeWithoutPrivilege(t *testing.T) {
	testenv.RequireRoot(t)
	root := os.Getenv("CARGOHOLD_TEST_NO_MKNOD")
	if root == "" {
		setpriv := testenv.LookPath(t, "setpriv", "util-linux") // to drop CAP_MKNOD
		// The store is created here, with every privilege: creating one without them is refused
		// (layout.ErrNotPrivileged), and what is tested is the unpacker's own refusal. It gets the good
		// image: a new store closed without images is taken away again.
		root = t.TempDir()
		store, err := layout.OpenWithOptions(t.Context(), filepath.Join(root, "store"), layout.Options{Create: true})
		if err != nil {
			t.Fatal(err)
		}
		goodDir := filepath.Join(t.TempDir(), "good") // outside root, which must hold only what the child makes
		if _, err := testimage.WriteLayout(goodDir, "1", testimage.Image{Layers: []testimage.Layer{goodBase()}}); err != nil {
			t.Fatal(err)
		}
		mustPublish(t, &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t)}}, "oci:"+goodDir+":1", hostileGoodName)
		closeStore(t, store)
		cmd := exec.Command(setpriv, "--inh-caps=-mknod", "--bounding-set=-mknod", "--",
			os.Args[0], "-test.run=^TestHostileDeviceNodeWithoutPrivilege$", "-test.v")
		cmd.Env = append(os.Environ(), "CARGOHOLD_TEST_NO_MKNOD="+root)
		out, err := cmd.CombinedOutput()
		t.Logf("without CAP_MKNOD:\n%s", out)
		if err != nil {
			t.Fatalf("the test without CAP_MKNOD failed: %v", err)
		}
		if !bytes.Contains(out, []byte("--- PASS: TestHostileDeviceNodeWithoutPrivilege")) {
			t.Fatal("the test without CAP_MKNOD did not run")
		}
		return
	}

	e := newHostileEnvIn(t, root)
	// (A 0/0 char device, an overlay whiteout, needs no privilege since Linux 5.8: probe with 1/1.)
	if err := unix.Mknod(filepath.Join(e.root, "probe"), unix.S_IFCHR, int(unix.Mkdev(1, 1))); !errors.Is(err, unix.EPERM) {
		t.Fatalf("mknod without CAP_MKNOD: %v, want EPERM", err)
	}
	store, err := layout.OpenWithOptions(t.Context(), e.store, layout.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore(t, store)
	p := &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t)}}
	goodDir := filepath.Join(e.layouts, "good")
	if _, err := testimage.WriteLayout(goodDir, "1", testimage.Image{Layers: []testimage.Layer{goodBase()}}); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, p, "oci:"+goodDir+":1", hostileGoodName)
	before := storeState(t, e.store)

	dir := filepath.Join(e.layouts, "device-node")
	if _, err := testimage.WriteLayout(dir, "1", onBase(testimage.Gzip,
		testimage.Dir("dev", 0o755), testimage.CharDevice("dev/mem", 0o600, 1, 1))); err != nil {
		t.Fatal(err)
	}
	res := publish(t, p, "oci:"+dir+":1", "localhost/hostile/device:1")
	if res.Err == nil {
		t.Fatal("published a device node without CAP_MKNOD")
	}
	t.Logf("error: %v", res.Err)
	for _, want := range []string{dir, `layer entry "dev/mem"`, "operation not permitted"} {
		if !strings.Contains(res.Err.Error(), want) {
			t.Errorf("the error does not contain %q", want)
		}
	}
	if diffs := diffState(before, storeState(t, e.store)); len(diffs) > 0 {
		t.Errorf("the failed publish changed the store: %v", diffs)
	}
	if err := os.Remove(filepath.Join(e.root, "probe")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	checkStore(t, e.store, true)
	e.checkOutside(t)
}

// hugePAXTar is a layer whose second entry has a 2 MiB PAX extended header, which archive/tar
// refuses to write: a regular file of that size is written and its type patched to 'x'.
func hugePAXTar() []byte {
	var buf bytes.Buffer
	body := fmt.Sprintf("%d comment=%s\n", 2<<20+19, strings.Repeat("x", 2<<20))
	if err := testimage.WriteTar(&buf, []testimage.Entry{
		testimage.File("etc/before", 0o644, ""),
		testimage.File("PaxHeaders/huge", 0o644, body),
		testimage.File("etc/huge", 0o644, ""),
	}); err != nil {
		panic(err)
	}
	// The second header block: the first entry has no body.
	return testimage.PatchTypeflag(buf.Bytes(), 512, tar.TypeXHeader)
}

// The corpus's huge header must be what a reader sees: archive/tar refuses to read it.
func TestHugePAXTarIsRefused(t *testing.T) {
	tr := tar.NewReader(bytes.NewReader(hugePAXTar()))
	if h, err := tr.Next(); err != nil || h.Name != "etc/before" {
		t.Fatalf("first entry: %v, %v", h, err)
	}
	if _, err := tr.Next(); !errors.Is(err, tar.ErrFieldTooLong) {
		t.Fatalf("second entry: %v, want %v", err, tar.ErrFieldTooLong)
	}
}

// imageNamed returns the image that carries name.
func imageNamed(store *layout.Store, name string) (storage.Image, bool) {
	for _, img := range store.Images() {
		if slices.Contains(img.Names, name) {
			return img, true
		}
	}
	return storage.Image{}, false
}
