// Command treelist prints one line per path of a directory tree, sorted, with
// everything a container could tell apart about it, so two trees (a container
// started from a cargohold store and one from Podman's own pull of the same
// image) are compared with diff:
//
//	treelist DIR
//
// Each line is, separated by spaces:
//
//	PATH TYPE MODE UID:GID SIZE MTIME NLINK RDEV TARGET SHA256 XATTRS
//
// PATH is relative to DIR ("." for DIR itself) and, like TARGET (a symlink's
// target), quoted Go-style so odd names stay on one line. MODE is the
// permission bits with setuid/setgid/sticky, in octal. SIZE and SHA256 are
// given for regular files, SIZE also for symlinks; NLINK for everything but
// directories (a directory's count only repeats its subdirectories); RDEV as
// major,minor for devices. MTIME is seconds.nanoseconds, except for DIR itself,
// whose mtime is the time its layer was unpacked in every Podman version and so
// never comparable. With -unpacked-after T, an mtime at or after T is "unpacked": a
// directory that a layer implies (a parent no entry names) is created when the layer is
// unpacked, by Podman and cargohold alike, so its mtime is never comparable either
// (T is when the test started: no image holds a later mtime). SHA256 is "unreadable" for a file the lister may not read,
// a directory it may not list gets a second line "PATH unreadable", a path whose
// attributes it may not read only that line; a name its
// directory lists but lstat cannot find is "PATH listed-but-missing". XATTRS is name=hex-value pairs, sorted, joined by commas.
// A field that does not apply is "-".
//
// It is built static (CGO_ENABLED=0) so it runs unchanged inside any Podman
// chroot and inside `podman unshare`.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// unpackedAfter, when set, is a Unix time: mtimes from then on are printed as
// "unpacked" (see the package comment).
var unpackedAfter int64

func main() {
	flag.Int64Var(&unpackedAfter, "unpacked-after", 0,
		"print mtimes at or after this Unix time as \"unpacked\" (dirs the unpacking created itself)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: treelist [-unpacked-after UNIXTIME] DIR")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	lines, err := list(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "treelist:", err)
		os.Exit(1)
	}
	if err := write(lines); err != nil {
		fmt.Fprintln(os.Stderr, "treelist:", err)
		os.Exit(1)
	}
}

func write(lines []string) error {
	w := bufio.NewWriter(os.Stdout)
	for _, l := range lines {
		if _, err := fmt.Fprintln(w, l); err != nil {
			return err
		}
	}
	return w.Flush()
}

// list walks root without following symlinks and returns the sorted lines.
func list(root string) ([]string, error) {
	var lines []string
	err := filepath.WalkDir(root, func(path string, _ fs.DirEntry, walkErr error) error {
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		if walkErr != nil {
			// A directory the lister may not read (a rootless reader's view of
			// root's 0700 /root): its line is already out; say so and go on.
			if errors.Is(walkErr, fs.ErrPermission) {
				lines = append(lines, strconv.Quote(rel)+" unreadable")
				return fs.SkipDir
			}
			return walkErr
		}
		l, err := line(path, rel)
		if errors.Is(err, fs.ErrPermission) {
			// Not even its attributes are readable to the lister (rootless, native overlay).
			lines = append(lines, strconv.Quote(rel)+" unreadable")
			return nil
		}
		if errors.Is(err, fs.ErrNotExist) {
			// Listed by its directory but not there (overlayfs shows a whiteout of a
			// name that no lower layer has so): a difference to show.
			lines = append(lines, strconv.Quote(rel)+" listed-but-missing")
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		lines = append(lines, l)
		return nil
	})
	sort.Strings(lines)
	return lines, err
}

// line describes one path (rel is its name relative to the walked root).
func line(path, rel string) (string, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return "", err
	}
	typ := fileType(st.Mode)
	size, nlink, rdev, target, sum := "-", "-", "-", "-", "-"
	switch typ {
	case "file":
		size = strconv.FormatInt(st.Size, 10)
		// A file the lister may not read (a rootless reader's view of another
		// owner's 0600 file) is a difference to show, not a reason to stop.
		h, err := hashFile(path)
		switch {
		case errors.Is(err, fs.ErrPermission):
			sum = "unreadable"
		case err != nil:
			return "", err
		default:
			sum = h
		}
	case "symlink":
		size = strconv.FormatInt(st.Size, 10)
		t, err := os.Readlink(path)
		if err != nil {
			return "", err
		}
		target = strconv.Quote(t)
	case "chardev", "blockdev":
		rdev = fmt.Sprintf("%d,%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	if typ != "dir" {
		nlink = strconv.FormatUint(st.Nlink, 10)
	}
	mtime := fmt.Sprintf("%d.%09d", st.Mtim.Sec, st.Mtim.Nsec)
	switch {
	case rel == ".":
		mtime = "-"
	case unpackedAfter != 0 && st.Mtim.Sec >= unpackedAfter:
		mtime = "unpacked"
	}
	xattrs, err := xattrList(path)
	if err != nil {
		return "", err
	}
	return strings.Join([]string{
		strconv.Quote(rel), typ, fmt.Sprintf("%04o", st.Mode&07777),
		fmt.Sprintf("%d:%d", st.Uid, st.Gid), size, mtime, nlink, rdev, target, sum, xattrs,
	}, " "), nil
}

func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFCHR:
		return "chardev"
	case unix.S_IFBLK:
		return "blockdev"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	}
	return "unknown"
}

func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// xattrList reads every extended attribute of path itself (not a symlink's target).
func xattrList(path string) (string, error) {
	names, err := listNames(path)
	if err != nil {
		return "", err
	}
	if len(names) == 0 {
		return "-", nil
	}
	sort.Strings(names)
	pairs := make([]string, 0, len(names))
	for _, n := range names {
		v, err := getValue(path, n)
		if err != nil {
			return "", fmt.Errorf("xattr %s: %w", n, err)
		}
		pairs = append(pairs, n+"="+hex.EncodeToString(v))
	}
	return strings.Join(pairs, ","), nil
}

func listNames(path string) ([]string, error) {
	size, err := unix.Llistxattr(path, nil)
	if errors.Is(err, unix.ENOTSUP) {
		return nil, nil
	}
	if err != nil || size == 0 {
		return nil, err
	}
	buf := make([]byte, size)
	size, err = unix.Llistxattr(path, buf)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, n := range strings.Split(string(buf[:size]), "\x00") {
		if n != "" {
			names = append(names, n)
		}
	}
	return names, nil
}

func getValue(path, name string) ([]byte, error) {
	size, err := unix.Lgetxattr(path, name, nil)
	if err != nil || size == 0 {
		return nil, err
	}
	buf := make([]byte, size)
	size, err = unix.Lgetxattr(path, name, buf)
	return buf[:size], err
}
