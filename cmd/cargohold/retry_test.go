package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cargohold/cargohold/internal/testenv"
	"github.com/cargohold/cargohold/publish"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// layoutRegistry serves the OCI layout dir as every repository of a registry: manifests by tag
// or digest, and blobs. unavailable answers the first manifest requests with 503 (a registry
// restarting), as many as it holds.
func layoutRegistry(t *testing.T, dir string, unavailable *atomic.Int32) *httptest.Server {
	t.Helper()
	var index v1.Index
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err == nil {
		err = json.Unmarshal(data, &index)
	}
	if err != nil {
		t.Fatal(err)
	}
	blob := func(w http.ResponseWriter, digest, mediaType string) {
		data, err := os.ReadFile(filepath.Join(dir, "blobs", strings.Replace(digest, ":", "/", 1)))
		if err != nil {
			http.NotFound(w, nil)
			return
		}
		w.Header().Set("Content-Type", mediaType)
		w.Header().Set("Docker-Content-Digest", digest)
		_, _ = w.Write(data)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(r.URL.Path, "/")
		last, kind := parts[len(parts)-1], parts[len(parts)-2]
		switch {
		case r.URL.Path == "/v2/":
		case kind == "manifests" && unavailable.Add(-1) >= 0:
			w.WriteHeader(http.StatusServiceUnavailable)
		case kind == "manifests":
			for _, m := range index.Manifests {
				if m.Annotations[v1.AnnotationRefName] == last || m.Digest.String() == last {
					blob(w, m.Digest.String(), m.MediaType)
					return
				}
			}
			http.NotFound(w, r)
		case kind == "blobs":
			blob(w, last, "application/octet-stream")
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// --quiet prints nothing on success, also when a registry request had to be retried; the retries
// are printed when the image finally fails, and as they happen without --quiet. The JSON report
// lists them.
func TestQuietRetries(t *testing.T) {
	testenv.RequireRoot(t)
	var unavailable atomic.Int32
	srv := layoutRegistry(t, filepath.Join(layouts, "hello"), &unavailable)
	ref := "docker://" + strings.TrimPrefix(srv.URL, "http://") + "/team/hello:1"
	publishRef := func(extra ...string) result {
		args := []string{"publish", "--store", filepath.Join(t.TempDir(), "store"), "--insecure-policy", "--tls-verify=false",
			"--retry-times", "1", ref}
		return cargohold(t, append(args, extra...)...)
	}
	retried := "reading " + ref + " failed"

	unavailable.Store(1)
	r := publishRef("--quiet")
	r.want(t, 0)
	if r.stdout+r.stderr != "" {
		t.Errorf("--quiet printed something for an image that succeeded on a retry:\n%s%s", r.stdout, r.stderr)
	}

	unavailable.Store(1)
	r = publishRef()
	r.want(t, 0, "warning: "+ref+": "+retried, "trying again in 1s (1 of 1)")
	if !strings.HasPrefix(r.stdout, "added ") {
		t.Errorf("stdout: %s", r.stdout)
	}

	unavailable.Store(1)
	r = publishRef("--format", "json")
	r.want(t, 0)
	var report publish.Report
	if err := json.Unmarshal([]byte(r.stdout), &report); err != nil || len(report.Images) != 1 || len(report.Images[0].Retries) != 1 ||
		!strings.Contains(report.Images[0].Retries[0], retried) {
		t.Errorf("the JSON report does not list the retry (%v):\n%s", err, r.stdout)
	}

	unavailable.Store(2)
	r = publishRef("--quiet")
	r.want(t, 1, "warning: "+ref+": "+retried, "error: "+ref)
	if w, e := strings.Index(r.stderr, "warning:"), strings.Index(r.stderr, "error:"); w > e {
		t.Errorf("the retry is not told before the error:\n%s", r.stderr)
	}
}

// The image library's own log lines (a blob read that reconnects) are held while an image of a
// --quiet run is published, and shown only if it fails.
func TestHeldLibraryLog(t *testing.T) {
	var out strings.Builder
	l := &heldLog{}
	l.reset(&out)
	l.hold()
	_, _ = l.Write([]byte("note: reconnecting\n"))
	l.release(false)
	if out.String() != "" {
		t.Errorf("a held line of an image that succeeded was printed: %q", out.String())
	}
	l.hold()
	_, _ = l.Write([]byte("note: reconnecting\n"))
	l.release(true)
	_, _ = l.Write([]byte("note: not held\n"))
	if want := "note: reconnecting\nnote: not held\n"; out.String() != want {
		t.Errorf("printed %q, want %q", out.String(), want)
	}
}
