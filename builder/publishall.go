package builder

import (
	"context"
	"strings"
	"sync"

	"go.podman.io/image/v5/types"
	"golang.org/x/sync/semaphore"
)

// DefaultImageJobs is how many images PublishAll works on at once. Most of an image's time is waiting
// for a registry: an unchanged tag costs one HEAD over the run's shared client (tagChecks), an image to
// fetch the image library's client of its own (a new connection, a ping, a token, the manifest) and
// its blobs; overlapping 64 of them makes a resync of a thousand tags from a registry 50 ms away take
// about a second of round trips (docs/PERFORMANCE.md). Layer work stays bounded by Jobs across all
// images, so memory hardly grows with this.
const DefaultImageJobs = 64

// PublishAll publishes the requests, up to ImageJobs at once, and calls onResult(i, result of
// reqs[i]) for every request in request order, one call after another (from goroutines of its own),
// as soon as the results before are reported. The store ends as if the requests had been published one after another: images
// are recorded (or found unchanged) in request order, so when two requests claim the same name the
// later one holds it. A failed image does not stop the others. When ctx is cancelled, images not
// yet recorded fail with ctx's error, and requests not yet started are reported failed without
// being started.
func (p *Publisher) PublishAll(ctx context.Context, reqs []Request, onResult func(int, Result)) {
	limit := p.ImageJobs
	if limit <= 0 {
		limit = DefaultImageJobs
	}
	p.tags.idle = limit
	defer p.tags.closeIdle()
	inOrder(ctx, len(reqs), limit,
		func(i int, t *turn) Result { return p.publish(ctx, reqs[i], t) },
		func(i int) Result { return Result{Ref: reqs[i].Ref, Action: Failed, Err: notStarted(ctx, reqs[i])} },
		onResult)
}

// inOrder runs work(i) for i in [0, n), up to limit at once, started in order, each with its turn
// (the turn of i follows the end of i-1's), and calls onResult(i, result) in order, one call after
// another, each before the slot of i is given to another work: with limit 1, work i+1 starts only
// after onResult(i) returned. Once ctx ends, nothing more starts: the rest get notStarted(i).
func inOrder(ctx context.Context, n, limit int, work func(int, *turn) Result, notStarted func(int) Result, onResult func(int, Result)) {
	slots := make(chan struct{}, limit)
	var prevTurn, prevReported <-chan struct{} // closed when i-1's turn is over, when it was reported
	var wg sync.WaitGroup
	for i := range n {
		t := &turn{prev: prevTurn, done: make(chan struct{})}
		reported, before := make(chan struct{}), prevReported
		prevTurn, prevReported = t.done, reported
		started := false
		select {
		case slots <- struct{}{}:
			started = true
		case <-ctx.Done():
		}
		if started && ctx.Err() != nil {
			<-slots
			started = false
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var res Result
			if started {
				res = work(i, t)
			} else {
				res = notStarted(i)
			}
			t.finish() // after the work before it, whatever happened to this one
			if before != nil {
				<-before
			}
			onResult(i, res)
			close(reported)
			if started {
				<-slots
			}
		}()
	}
	wg.Wait()
}

// notStarted is the error of a request PublishAll did not start because ctx ended.
func notStarted(ctx context.Context, req Request) error {
	return &notStartedError{ref: req.Ref, err: context.Cause(ctx)}
}

type notStartedError struct {
	ref string
	err error
}

func (e *notStartedError) Error() string { return e.ref + ": not started: " + e.err.Error() }
func (e *notStartedError) Unwrap() error { return e.err }

// A turn orders what images change in the store: an image records itself (or decides it is
// unchanged) only once the image requested before it has done so or failed, so that the end state
// does not depend on which image was fetched first. A nil turn is a lone Publish: always its turn.
type turn struct {
	prev <-chan struct{} // closed when the previous image is through; nil for the first
	done chan struct{}   // closed by pass or finish, when this image is through
	mine bool            // wait returned nil once: this image is in its turn
	once sync.Once
}

// wait blocks until it is the image's turn; an error if ctx ends first.
func (t *turn) wait(ctx context.Context) error {
	if t == nil || t.mine {
		return ctx.Err()
	}
	if t.prev != nil {
		select {
		case <-t.prev:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := ctx.Err(); err != nil {
		return err // cancelled while waiting: nothing more is recorded
	}
	t.mine = true
	return nil
}

// pass ends the image's turn, which it has (wait returned nil): the next image may go.
func (t *turn) pass() {
	if t != nil {
		t.once.Do(func() { close(t.done) })
	}
}

// finish ends the image's turn once the images before it are through, if pass has not.
func (t *turn) finish() {
	if t == nil {
		return
	}
	if t.prev != nil {
		<-t.prev
	}
	t.pass()
}

// layerFlights makes sure a layer the store lacks is fetched by one image at a time: the first
// image of a run that needs it leads (fetches and commits it), the others wait for the leader and
// use what it committed, or fetch it themselves if the leader failed.
type layerFlights struct {
	mu sync.Mutex
	m  map[string]*flight // by chain ID, while led
}

// A flight is one image fetching one layer for everybody who needs it.
type flight struct {
	id   string
	done chan struct{} // closed when the leader committed the layer or gave up
	once sync.Once
	f    *layerFlights
}

// plan decides, for the chain IDs of one image's layers (base first) and atomically for all of
// them, which layers the store has (have), which this image leads and which it waits for.
// Deciding a whole image at once, base first, keeps waits from forming a cycle: of two images
// sharing layers, the one planned first leads all their shared layers it lacks.
func (lf *layerFlights) plan(ids []string, has func(string) bool) (have []bool, lead, wait []*flight) {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if lf.m == nil {
		lf.m = map[string]*flight{}
	}
	have = make([]bool, len(ids))
	lead = make([]*flight, len(ids))
	wait = make([]*flight, len(ids))
	for i, id := range ids {
		switch f := lf.m[id]; {
		case f != nil: // before has: a leader commits first and lands only then
			wait[i] = f
		case has(id):
			have[i] = true
		default:
			lead[i] = lf.start(id)
		}
	}
	return have, lead, wait
}

// lead makes the caller the leader of id if nobody leads it now; otherwise it returns the flight
// to wait for.
func (lf *layerFlights) lead(id string) (led, other *flight) {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if f := lf.m[id]; f != nil {
		return nil, f
	}
	return lf.start(id), nil
}

func (lf *layerFlights) start(id string) *flight {
	if lf.m == nil {
		lf.m = map[string]*flight{}
	}
	f := &flight{id: id, done: make(chan struct{}), f: lf}
	lf.m[id] = f
	return f
}

// land ends the flight (the layer was committed, or the leader gave up); nil and repeated calls
// do nothing.
func (f *flight) land() {
	if f == nil {
		return
	}
	f.once.Do(func() {
		f.f.mu.Lock()
		delete(f.f.m, f.id)
		f.f.mu.Unlock()
		close(f.done)
	})
}

// await waits until the flight lands; an error if ctx ends first.
func (f *flight) await(ctx context.Context) error {
	select {
	case <-f.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// layerSlots bounds the layers fetched and unpacked at once by all images of a Publisher (Jobs), so
// that memory does not grow with the number of images in flight. A slot is what a large layer may
// need (pgzip's read-ahead blocks, a zstd window of up to 8 MiB); a small gzip or uncompressed layer
// (a blob under smallGzipBlob, decoded in the reading goroutine with a 32 KiB window) takes a
// smallLayersPerSlot-th of one: a cold publish of many small images otherwise waits a round trip
// per layer, four layers at a time, for no memory's sake.
type layerSlots struct {
	once sync.Once
	sem  *semaphore.Weighted
}

// smallLayersPerSlot is how many small layers fit in one --jobs slot.
const smallLayersPerSlot = 8

// layerWeight is how much of the layer slots the layer blob takes (its size -1 if unknown).
func layerWeight(blob types.BlobInfo) int64 {
	if blob.Size >= 0 && blob.Size < smallGzipBlob && !strings.Contains(strings.ToLower(blob.MediaType), "zstd") {
		return 1
	}
	return smallLayersPerSlot
}

// acquire waits until blob fits in the jobs slots; an error if ctx ends first. It returns the
// release of what it took.
func (s *layerSlots) acquire(ctx context.Context, jobs int, blob types.BlobInfo) (release func(), err error) {
	s.once.Do(func() {
		if jobs <= 0 {
			jobs = DefaultJobs
		}
		s.sem = semaphore.NewWeighted(int64(jobs) * smallLayersPerSlot)
	})
	w := layerWeight(blob)
	if err := s.sem.Acquire(ctx, w); err != nil {
		return nil, err
	}
	return func() { s.sem.Release(w) }, nil
}
