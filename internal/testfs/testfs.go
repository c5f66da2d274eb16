// Package testfs gives tests a filesystem of their own: a sparse file made into XFS (with reflinks)
// or ext4 and loop-mounted, for what only such a filesystem does (sharing extents, a hard-link limit)
// and for measuring space without other writers' noise. It needs root, mkfs.xfs (xfsprogs) and
// mkfs.ext4 (e2fsprogs); without them a test fails in CI and is skipped elsewhere (testenv).
package testfs

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/cargohold/cargohold/internal/testenv"
	"golang.org/x/sys/unix"
)

// XFS mounts a new XFS filesystem with reflinks (mkfs.xfs -m reflink=1, RHEL's default) of size
// bytes (at least 300 MiB, mkfs.xfs's minimum) and returns its mount point, unmounted when the
// test ends.
func XFS(t testing.TB, size int64) string {
	t.Helper()
	return mount(t, "xfs", max(size, 300<<20), "mkfs.xfs", "-q", "-m", "reflink=1")
}

// Ext4 mounts a new ext4 filesystem (no reflinks; at most 65000 links per inode) of size bytes.
func Ext4(t testing.TB, size int64) string {
	t.Helper()
	return mount(t, "ext4", size, "mkfs.ext4", "-q", "-F")
}

func mount(t testing.TB, kind string, size int64, mkfs ...string) string {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.LookPath(t, mkfs[0], map[string]string{"xfs": "xfsprogs", "ext4": "e2fsprogs"}[kind])
	dir := t.TempDir()
	img := filepath.Join(dir, kind+".img")
	f, err := os.Create(img)
	if err == nil {
		err = f.Truncate(size)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs[0], append(mkfs[1:], img)...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", strings.Join(mkfs, " "), img, err, out)
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		testenv.Missing(t, "a loop-mounted %s (mount -o loop %s: %v: %s)", kind, img, err, out)
	}
	t.Cleanup(func() { unmount(t, mnt) })
	// t.TempDir is 0700; readers of a store inside may be other users.
	if err := os.Chmod(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	return mnt
}

// unmount retries while something (a process of the test that is still closing files) keeps the
// filesystem busy, then detaches it lazily: the loop file is removed with the temp dir either way.
func unmount(t testing.TB, mnt string) {
	for range 50 {
		if err := unix.Unmount(mnt, 0); err == nil || err == unix.EINVAL {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
		t.Errorf("unmounting %s: %v", mnt, err)
	}
}

// Used is how many bytes the filesystem holding dir has allocated, as df counts them (shared
// extents once).
func Used(t testing.TB, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize
}

// Extent is one extent of a file as FIEMAP reports it.
type Extent struct {
	Logical, Physical, Length uint64
	Flags                     uint32
}

// fiemap(2) as linux/fiemap.h lays it out; golang.org/x/sys has no wrapper.
const (
	fsIocFiemap     = 0xc020660b // _IOWR('f', 11, struct fiemap)
	fiemapFlagSync  = 0x1
	fiemapHeader    = 32
	fiemapExtent    = 56
	fiemapMaxExtent = 512
	extentLast      = 0x1
)

// Extents lists the data extents of the file at p (holes have none), synced first.
func Extents(t testing.TB, p string) []Extent {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }() // read-only
	var res []Extent
	for start := uint64(0); ; {
		buf := make([]byte, fiemapHeader+fiemapMaxExtent*fiemapExtent)
		le := binary.LittleEndian
		le.PutUint64(buf[0:], start)
		le.PutUint64(buf[8:], ^uint64(0)-start)
		le.PutUint32(buf[16:], fiemapFlagSync)
		le.PutUint32(buf[24:], fiemapMaxExtent)
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fsIocFiemap, uintptr(unsafe.Pointer(&buf[0]))); errno != 0 {
			t.Fatalf("FIEMAP %s: %v", p, errno)
		}
		n := int(le.Uint32(buf[20:]))
		if n == 0 {
			return res
		}
		for i := range n {
			e := buf[fiemapHeader+i*fiemapExtent:]
			x := Extent{Logical: le.Uint64(e[0:]), Physical: le.Uint64(e[8:]), Length: le.Uint64(e[16:]), Flags: le.Uint32(e[40:])}
			res = append(res, x)
			start = x.Logical + x.Length
			if x.Flags&extentLast != 0 {
				return res
			}
		}
	}
}

// SharedBytes is how many bytes of a's extents are also extents of b (the same blocks on disk).
func SharedBytes(t testing.TB, a, b string) int64 {
	t.Helper()
	var shared int64
	eb := Extents(t, b)
	for _, x := range Extents(t, a) {
		for _, y := range eb {
			lo, hi := max(x.Physical, y.Physical), min(x.Physical+x.Length, y.Physical+y.Length)
			if hi > lo {
				shared += int64(hi - lo)
			}
		}
	}
	return shared
}
