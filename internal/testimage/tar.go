// Package testimage builds container images from hand-made layers, for tests,
// the e2e fixtures and the quickstart.
//
// A Layer is an ordered list of tar entries written with archive/tar exactly
// as given (no sorting, no implicit parent directories), so a test controls
// every header: whiteouts, opaque markers, hardlinks, devices, PAX xattrs.
// WriteLayout turns layers into an OCI image layout (oci-layout, index.json,
// blobs/sha256/...) that `skopeo copy oci:DIR:TAG docker://...` pushes as is.
//
// Everything is reproducible: entries get a fixed mtime unless they set one,
// gzip headers carry no name or time, zstd runs single-threaded, configs have
// a fixed creation time. The same input gives the same digests on every run.
package testimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"time"
)

// Epoch is the mtime of every entry that does not set one and the default
// creation time of images and history entries.
var Epoch = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// Entry is one tar entry of a layer. Modes are Unix mode bits as in a tar
// header (0o4755 is setuid), not fs.FileMode. Header.Size is set from Data unless
// Body is used; Header.ModTime defaults to Epoch.
type Entry struct {
	Header tar.Header
	// Data is the body of a small regular file.
	Data []byte
	// Body, if set, streams the body of a large regular file; Header.Size
	// must then be set. It is called once per write of the layer.
	Body func() io.Reader
	// Raw, if set, is written to the stream as is (whole 512-byte blocks: header and body) in
	// place of Header: for headers archive/tar cannot write (V7File, GNUSparseFile). Header.Name
	// still names the entry for error messages.
	Raw []byte
}

// Owner returns a copy of e owned by uid:gid.
func (e Entry) Owner(uid, gid int) Entry {
	e.Header.Uid, e.Header.Gid = uid, gid
	return e
}

// Xattr returns a copy of e carrying the extended attribute name=value as a
// "SCHILY.xattr." PAX record (the form docker, podman and buildah write).
func (e Entry) Xattr(name string, value []byte) Entry {
	recs := make(map[string]string, len(e.Header.PAXRecords)+1)
	for k, v := range e.Header.PAXRecords {
		recs[k] = v
	}
	recs["SCHILY.xattr."+name] = string(value)
	e.Header.PAXRecords = recs
	return e
}

// Dir is a directory entry; name gets a trailing slash as tar writers do.
func Dir(name string, mode int64) Entry {
	if name[len(name)-1] != '/' {
		name += "/"
	}
	return Entry{Header: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode}}
}

// File is a regular file holding content.
func File(name string, mode int64, content string) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode}, Data: []byte(content)}
}

// BinaryFile is a regular file holding data.
func BinaryFile(name string, mode int64, data []byte) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode}, Data: data}
}

// SparseFile is a regular file of size bytes, all zero except data written
// at offset at. The tar stream carries every zero (OCI layers are plain tar,
// no GNU sparse headers); an unpacker should turn the zero runs into holes.
// The body is generated while writing, never held in memory.
func SparseFile(name string, mode int64, size, at int64, data []byte) Entry {
	if at < 0 || at+int64(len(data)) > size {
		panic(fmt.Sprintf("testimage: SparseFile %s: data at %d does not fit in %d bytes", name, at, size))
	}
	return Entry{
		Header: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: size},
		Body: func() io.Reader {
			return io.MultiReader(
				io.LimitReader(zeros{}, at),
				bytes.NewReader(data),
				io.LimitReader(zeros{}, size-at-int64(len(data))),
			)
		},
	}
}

// Symlink is a symbolic link name -> target.
func Symlink(name, target string) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

// Hardlink is a hard link name to target, an earlier entry of the same layer
// (target is its tar name, e.g. "data/hard1").
func Hardlink(name, target string) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644}}
}

// Fifo is a named pipe.
func Fifo(name string, mode int64) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeFifo, Name: name, Mode: mode}}
}

// CharDevice is a character device node.
func CharDevice(name string, mode int64, major, minor int64) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeChar, Name: name, Mode: mode, Devmajor: major, Devminor: minor}}
}

// BlockDevice is a block device node.
func BlockDevice(name string, mode int64, major, minor int64) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeBlock, Name: name, Mode: mode, Devmajor: major, Devminor: minor}}
}

// Whiteout deletes path (e.g. "data/deleted.txt") from the layers below: an
// empty file named ".wh.<base>" in the same directory (OCI image spec).
func Whiteout(path string) Entry {
	dir, base := splitPath(path)
	return File(dir+".wh."+base, 0o644, "")
}

// Opaque hides everything the layers below have in dir (e.g. "data/opq"):
// the ".wh..wh..opq" marker. Put it right after dir's own entry.
func Opaque(dir string) Entry {
	if dir[len(dir)-1] != '/' {
		dir += "/"
	}
	return File(dir+".wh..wh..opq", 0o644, "")
}

// WriteTar writes entries as one tar stream to w (including the end-of-archive
// blocks).
func WriteTar(w io.Writer, entries []Entry) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		if e.Raw != nil {
			if err := writeRaw(tw, w, e.Raw); err != nil {
				return fmt.Errorf("tar entry %s: %w", e.Header.Name, err)
			}
			continue
		}
		h := e.Header
		if h.ModTime.IsZero() && h.Typeflag != tar.TypeXGlobalHeader { // a global header has records only
			h.ModTime = Epoch
		}
		var body io.Reader
		switch {
		case e.Body != nil:
			body = e.Body()
		case h.Typeflag == tar.TypeReg:
			h.Size = int64(len(e.Data))
			body = bytes.NewReader(e.Data)
		}
		if err := tw.WriteHeader(&h); err != nil {
			return fmt.Errorf("tar header %s: %w", h.Name, err)
		}
		if body != nil {
			n, err := io.Copy(tw, body)
			if err != nil {
				return fmt.Errorf("tar body %s: %w", h.Name, err)
			}
			if n != h.Size {
				return fmt.Errorf("tar body %s: wrote %d bytes, header says %d", h.Name, n, h.Size)
			}
		}
	}
	return tw.Close()
}

// writeRaw writes raw between two entries of tw: tw writes straight to w (no buffer), so once the
// previous entry's padding is flushed, raw blocks land exactly where the next header would.
func writeRaw(tw *tar.Writer, w io.Writer, raw []byte) error {
	if len(raw)%blockSize != 0 {
		return fmt.Errorf("raw entry of %d bytes is not whole %d-byte blocks", len(raw), blockSize)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := w.Write(raw)
	return err
}

func splitPath(p string) (dir, base string) {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[:i+1], p[i+1:]
		}
	}
	return "", p
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
