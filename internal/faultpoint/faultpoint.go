// Package faultpoint lets tests stop cargohold at named points of a publish, the way a power cut or
// an OOM kill would: scripts/e2e-crash runs a real publish with
//
//	CARGOHOLD_FAULT=<name>[:<nth>][:stop]
//
// and the process sends itself SIGKILL at the nth time (default: the first) it passes the point
// <name>, or SIGSTOP with ":stop" (to look at a store while its writer is frozen mid-publish, holding
// the lock; SIGCONT resumes it). Without the variable, Hit is one load of a package variable.
//
// Points, in the order a publish passes them (see their call sites):
//
//	store-locked, leftovers-removing, leftovers-removed          layout.OpenWithOptions
//	layer-staged, layer-unpacking, layer-unpacked                 layout.StageLayer, builder fetch (per layer)
//	file-shared                                                   builder/unpack (per file sharing data)
//	layer-lowers-written, layer-renamed, layer-tarsplit-moved,
//	layer-files-moved, layer-linked, layer-synced, layer-recorded layout.CommitLayer
//	image-layers-committed, image-bigdata-written,
//	image-recorded, image-published                               builder / layout.PutImage
//	<file>-temp-synced, <file>-renamed                            every atomic file replacement;
//	                                                              <file> is layers-json, images-json,
//	                                                              bigdata or file
package faultpoint

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// EnvVar names the fault to inject.
const EnvVar = "CARGOHOLD_FAULT"

var (
	target = parse(os.Getenv(EnvVar))
	hits   atomic.Int64
)

type spec struct {
	name string // "" when no fault is configured
	nth  int64
	stop bool
}

// parse reads "<name>[:<nth>][:stop]". A malformed value disables nothing silently: it panics at
// start-up, since a crash test with a typo would otherwise pass without ever crashing.
func parse(v string) spec {
	if v == "" {
		return spec{}
	}
	parts := strings.Split(v, ":")
	s := spec{name: parts[0], nth: 1}
	rest := parts[1:]
	if len(rest) > 0 && rest[len(rest)-1] == "stop" {
		s.stop = true
		rest = rest[:len(rest)-1]
	}
	if len(rest) > 0 {
		n, err := strconv.ParseInt(rest[0], 10, 64)
		if err != nil || n < 1 {
			panic(fmt.Sprintf("%s=%q: the count after the point name must be a number >= 1", EnvVar, v))
		}
		s.nth = n
		rest = rest[1:]
	}
	if s.name == "" || len(rest) > 0 {
		panic(fmt.Sprintf("%s=%q: want <name>[:<nth>][:stop]", EnvVar, v))
	}
	return s
}

// Hit marks that the process passed the point name. It returns at once unless CARGOHOLD_FAULT
// names this point; at the configured hit it kills (or stops) the whole process.
func Hit(name string) {
	if target.name == "" || target.name != name {
		return
	}
	n := hits.Add(1)
	if n != target.nth {
		return
	}
	// On stderr first, so the test can tell a fault from a real crash.
	fmt.Fprintf(os.Stderr, "cargohold: fault point %s (hit %d): %s\n", name, n, map[bool]string{false: "SIGKILL", true: "SIGSTOP"}[target.stop])
	if target.stop {
		_ = syscall.Kill(os.Getpid(), syscall.SIGSTOP)
		return
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // SIGKILL cannot be caught; never run another instruction of the caller
}

// Reader returns r, or, when CARGOHOLD_FAULT names point, a reader that hits point on its second
// Read: after some data went through, i.e. in the middle of the stream's consumer.
func Reader(point string, r io.Reader) io.Reader {
	if target.name != point {
		return r
	}
	return &reader{r: r, point: point}
}

type reader struct {
	r     io.Reader
	point string
	reads int
}

func (f *reader) Read(p []byte) (int, error) {
	if f.reads++; f.reads == 2 {
		Hit(f.point)
	}
	return f.r.Read(p)
}
