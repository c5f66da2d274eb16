package builder

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cargohold/cargohold/internal/testenv"
	"github.com/cargohold/cargohold/internal/testimage"
	"github.com/cargohold/cargohold/layout"
	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/types"
)

// The scheduler alone: results in request order, turns in request order, bounded concurrency.
func TestInOrderReportsInOrderAndBoundsConcurrency(t *testing.T) {
	const n, limit = 24, 3
	var running, most atomic.Int32
	var mu sync.Mutex
	var turns []int
	work := func(i int, tr *turn) Result {
		now := running.Add(1)
		for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
		}
		// Later work finishes first more often than not: the order must not come from timing.
		time.Sleep(time.Duration(5+rand.IntN(20)) * time.Millisecond)
		running.Add(-1)
		if err := tr.wait(context.Background()); err != nil {
			return Result{Err: err}
		}
		mu.Lock()
		turns = append(turns, i)
		mu.Unlock()
		return Result{Ref: fmt.Sprint(i)}
	}
	var reported []int
	inOrder(context.Background(), n, limit, work, func(int) Result { return Result{Err: errors.New("not started")} },
		func(i int, res Result) {
			if res.Ref != fmt.Sprint(i) || res.Err != nil {
				t.Errorf("result %d is %+v, want the result of work %d", i, res, i)
			}
			reported = append(reported, i)
		})
	want := make([]int, n)
	for i := range want {
		want[i] = i
	}
	if !slices.Equal(reported, want) {
		t.Errorf("results reported in order %v, want %v", reported, want)
	}
	if !slices.Equal(turns, want) {
		t.Errorf("turns taken in order %v, want %v", turns, want)
	}
	if m := most.Load(); m > limit || m < 2 {
		t.Errorf("at most %d ran at once, want 2..%d", m, limit)
	}
}

func TestInOrderStartsNothingOnceCancelled(t *testing.T) {
	const n, limit = 10, 2
	ctx, cancel := context.WithCancel(context.Background())
	var started atomic.Int32
	work := func(i int, tr *turn) Result {
		if started.Add(1) == limit {
			cancel()
		}
		<-ctx.Done()
		return Result{Ref: fmt.Sprint(i), Err: tr.wait(ctx)}
	}
	var got []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		inOrder(ctx, n, limit, work, func(i int) Result { return Result{Ref: fmt.Sprint(i), Err: errors.New("not started")} },
			func(i int, res Result) { got = append(got, fmt.Sprintf("%d:%v", i, res.Err)) })
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("inOrder did not return after its context was cancelled")
	}
	if s := started.Load(); s != limit {
		t.Errorf("%d started, want %d (none after the cancel)", s, limit)
	}
	want := []string{"0:context canceled", "1:context canceled"}
	for i := limit; i < n; i++ {
		want = append(want, fmt.Sprintf("%d:not started", i))
	}
	if !slices.Equal(got, want) {
		t.Errorf("results %v, want %v", got, want)
	}
}

// sharedImages writes n images into layouts of their own: each is a shared base layer and a small
// layer of its own. It returns their oci: references and what was written.
func sharedImages(t *testing.T, n int) ([]string, []testimage.Written) {
	t.Helper()
	dir := t.TempDir()
	var refs []string
	var ws []testimage.Written
	for i := range n {
		own := testimage.Layer{Compression: testimage.Gzip, Entries: []testimage.Entry{
			testimage.Dir("srv/", 0o755), testimage.File("srv/id", 0o644, fmt.Sprintf("image %d\n", i))}}
		img := testimage.Image{Layers: []testimage.Layer{goodBase(), own}, Cmd: []string{"/bin/sh"}}
		layoutDir := filepath.Join(dir, fmt.Sprintf("img%d", i))
		w, err := testimage.WriteLayout(layoutDir, "1", img)
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, "oci:"+layoutDir+":1")
		ws = append(ws, w)
	}
	return refs, ws
}

func requests(refs []string, names func(i int) []string) []Request {
	var reqs []Request
	for i, r := range refs {
		reqs = append(reqs, Request{Ref: r, Names: names(i)})
	}
	return reqs
}

func nameOf(i int) []string { return []string{fmt.Sprintf("localhost/shared/img%d:1", i)} }

// publishAll runs PublishAll and returns the results in the order reported, failing the test if
// they come out of order.
func publishAll(t *testing.T, ctx context.Context, p *Publisher, reqs []Request) []Result {
	t.Helper()
	var results []Result
	p.PublishAll(ctx, reqs, func(i int, res Result) {
		if i != len(results) {
			t.Errorf("result of request %d reported after %d results", i, len(results))
		}
		if res.Ref != reqs[i].Ref {
			t.Errorf("result %d is of %s, want %s", i, res.Ref, reqs[i].Ref)
		}
		results = append(results, res)
	})
	if len(results) != len(reqs) {
		t.Fatalf("%d results for %d requests", len(results), len(reqs))
	}
	return results
}

// layerCounter counts progress events by layer and the most layers in flight at once.
type layerCounter struct {
	mu       sync.Mutex
	started  map[digest.Digest]int
	inFlight int
	most     int
	hook     func(e ProgressEvent) // called, unlocked, before an event is counted
}

func newLayerCounter() *layerCounter { return &layerCounter{started: map[digest.Digest]int{}} }

func (c *layerCounter) event(e ProgressEvent) {
	if c.hook != nil {
		c.hook(e)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch e.Kind {
	case LayerStarted:
		c.started[e.Layer]++
		c.inFlight++
		c.most = max(c.most, c.inFlight)
	case LayerDone, LayerFailed:
		c.inFlight--
	}
}

// While one image fetches the shared base layer, every other image has started its own layer: they
// all overlap, and still the base is fetched once and each image is published.
func TestPublishAllFetchesASharedLayerOnce(t *testing.T) {
	testenv.RequireRoot(t)
	const n = 4
	refs, ws := sharedImages(t, n)
	base := ws[0].Layers[0].Digest
	store, dir := openStore(t)

	counter := newLayerCounter()
	var ownStarted atomic.Int32
	allStarted := make(chan struct{})
	counter.hook = func(e ProgressEvent) {
		switch {
		case e.Kind != LayerStarted:
		case e.Layer == base:
			select {
			case <-allStarted:
			case <-time.After(30 * time.Second):
				t.Errorf("only %d of %d images started their own layer while the base was being fetched", ownStarted.Load(), n)
			}
		case ownStarted.Add(1) == n:
			close(allStarted)
		}
	}
	p := &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t)}, Jobs: n + 1, ImageJobs: n,
		Progress: counter.event}
	results := publishAll(t, context.Background(), p, requests(refs, nameOf))

	fetched := 0
	for i, res := range results {
		if res.Err != nil || res.Action != Added {
			t.Errorf("image %d: %s, %v; want added", i, res.Action, res.Err)
		}
		fetched += res.LayersFetched
	}
	if got := counter.started[base]; got != 1 {
		t.Errorf("the shared base layer was fetched %d times, want once", got)
	}
	if fetched != n+1 {
		t.Errorf("%d layers fetched in all, want %d (the base once, each image's own)", fetched, n+1)
	}
	checkStore(t, dir, false)
	if got := len(storeView(t, dir).Layers); got != n+1 {
		t.Errorf("the store holds %d layers, want %d", got, n+1)
	}
}

// The same on a vfs store, whose layers are committed one after another, parents first; and a
// second run finds everything unchanged.
func TestPublishAllVFS(t *testing.T) {
	testenv.RequireRoot(t)
	const n = 5
	refs, ws := sharedImages(t, n)
	dir := filepath.Join(t.TempDir(), "store")
	store := openStoreAt(t, dir, layout.Options{Driver: layout.VFS})
	counter := newLayerCounter()
	p := &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t)}, ImageJobs: n, Progress: counter.event}
	for run, want := range []Action{Added, Unchanged} {
		for i, res := range publishAll(t, context.Background(), p, requests(refs, nameOf)) {
			if res.Err != nil || res.Action != want {
				t.Errorf("run %d, image %d: %s, %v; want %s", run+1, i, res.Action, res.Err, want)
			}
		}
	}
	if got := counter.started[ws[0].Layers[0].Digest]; got != 1 {
		t.Errorf("the shared base layer was fetched %d times, want once", got)
	}
	checkStore(t, dir, true)
}

// A failing image is reported as failed in its place; the others are published. No more layers
// than Jobs slots hold are in flight at once (these small layers take a smallLayersPerSlot-th of one
// each), whatever the number of images.
func TestPublishAllOneFailureDoesNotStopTheOthers(t *testing.T) {
	testenv.RequireRoot(t)
	refs, _ := sharedImages(t, 6)
	missing := "oci:" + filepath.Join(t.TempDir(), "no-such-layout") + ":1"
	refs = slices.Insert(refs, 2, missing)
	store, dir := openStore(t)
	counter := newLayerCounter()
	p := &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t)}, Jobs: 2, ImageJobs: 4, Progress: counter.event}
	results := publishAll(t, context.Background(), p, requests(refs, nameOf))
	for i, res := range results {
		switch {
		case i == 2 && (res.Action != Failed || res.Err == nil || !strings.Contains(res.Err.Error(), missing)):
			t.Errorf("the missing image: %s, %v; want failed, naming %s", res.Action, res.Err, missing)
		case i != 2 && (res.Err != nil || res.Action != Added):
			t.Errorf("image %d: %s, %v; want added", i, res.Action, res.Err)
		}
	}
	if counter.most > 2*smallLayersPerSlot {
		t.Errorf("%d small layers were fetched at once, want at most Jobs=2 × %d", counter.most, smallLayersPerSlot)
	}
	if got := len(storeView(t, dir).Images); got != 6 {
		t.Errorf("the store holds %d images, want 6", got)
	}
	checkStore(t, dir, false)
}

// When a later request names an image with a name an earlier one has too, the later one holds it,
// as when they are published one after another, however the fetches interleave.
func TestPublishAllRecordsInRequestOrder(t *testing.T) {
	testenv.RequireRoot(t)
	const n = 6
	refs, ws := sharedImages(t, n)
	store, dir := openStore(t)
	p := &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t)}, ImageJobs: n}
	both := func(i int) []string { return append(nameOf(i), "localhost/shared/latest:1") }
	for _, res := range publishAll(t, context.Background(), p, requests(refs, both)) {
		if res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	img, err := storeView(t, dir).Find("localhost/shared/latest:1")
	if err != nil {
		t.Fatal(err)
	}
	if want := ws[n-1].Config.Encoded(); img.ID != want {
		t.Errorf("the shared name is on image %s, want the last request's %s", img.ID, want)
	}
}

// Cancelling stops every image: each reports the cancellation, nothing is recorded, no staged layer
// is left behind.
func TestPublishAllCancelStopsAll(t *testing.T) {
	testenv.RequireRoot(t)
	refs, _ := sharedImages(t, 6)
	store, dir := openStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := &Publisher{Store: store, Options: Options{PolicyPath: acceptAnythingPolicy(t)}, ImageJobs: 3,
		Progress: func(e ProgressEvent) {
			if e.Kind == LayerStarted {
				cancel()
			}
		}}
	done := make(chan []Result)
	go func() { done <- publishAll(t, ctx, p, requests(refs, nameOf)) }()
	var results []Result
	select {
	case results = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("PublishAll did not return after its context was cancelled")
	}
	for i, res := range results {
		if res.Action != Failed || !errors.Is(res.Err, context.Canceled) {
			t.Errorf("image %d: %s, %v; want failed by the cancellation", i, res.Action, res.Err)
		}
	}
	snap := storeView(t, dir)
	if len(snap.Images) != 0 || len(snap.Layers) != 0 {
		t.Errorf("the store holds %d images and %d layers after a cancelled run, want none", len(snap.Images), len(snap.Layers))
	}
	closeStore(t, store)
	if left := openStoreAt(t, dir, layout.Options{}).Cleaned(); len(left) != 0 {
		t.Errorf("the cancelled run left %v behind", left)
	}
	checkStore(t, dir, false)
}

// A --jobs slot holds one large layer or smallLayersPerSlot small gzip (or uncompressed) layers: a
// zstd layer, a layer of unknown size and a large one take a whole slot.
func TestLayerSlotsFitSmallLayersManyToASlot(t *testing.T) {
	small := types.BlobInfo{Size: 4 << 10, MediaType: "application/vnd.oci.image.layer.v1.tar+gzip"}
	for name, blob := range map[string]types.BlobInfo{
		"large gzip":   {Size: smallGzipBlob, MediaType: small.MediaType},
		"small zstd":   {Size: 4 << 10, MediaType: "application/vnd.oci.image.layer.v1.tar+zstd"},
		"unknown size": {Size: -1, MediaType: small.MediaType},
	} {
		t.Run(name, func(t *testing.T) {
			var s layerSlots
			ctx := context.Background()
			held, err := s.acquire(ctx, 1, small)
			if err != nil {
				t.Fatal(err)
			}
			// one small layer in the only slot: a whole-slot layer must wait for it
			short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			defer cancel()
			if _, err := s.acquire(short, 1, blob); err == nil {
				t.Fatalf("a %s layer got the slot a small layer holds part of", name)
			}
			held()
			release, err := s.acquire(ctx, 1, blob)
			if err != nil {
				t.Fatal(err)
			}
			release()
		})
	}
	var s layerSlots
	var releases []func()
	for i := range 2 * smallLayersPerSlot {
		release, err := s.acquire(context.Background(), 2, small)
		if err != nil {
			t.Fatalf("small layer %d of %d in 2 slots: %v", i+1, 2*smallLayersPerSlot, err)
		}
		releases = append(releases, release)
	}
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.acquire(short, 2, small); err == nil {
		t.Errorf("%d small layers fit in 2 slots, want %d", 2*smallLayersPerSlot+1, 2*smallLayersPerSlot)
	}
	for _, r := range releases {
		r()
	}
}
