package publish

import (
	"io"

	"github.com/cargohold/cargohold/builder"
	"github.com/cargohold/cargohold/layout"
)

// Observer is how a run reports what it does; the CLI renders it as text, progress bars or JSON.
// Its zero value reports nothing and discards the hooks' output.
type Observer struct {
	// Event receives each step of the run, in order, from the goroutine that called Run; only
	// LayerProgress and ImageRetrying come from the goroutines fetching layers (so Event must be safe
	// for concurrent use, and quick).
	Event func(Event)
	// HookStdout and HookStderr receive the output of the hooks' commands (nil: discarded).
	HookStdout, HookStderr io.Writer
}

func (o Observer) send(e Event) {
	if o.Event != nil {
		o.Event(e)
	}
}

// Event is one of the types below. Each names the store (absolute path) it concerns.
type Event interface{ StoreDir() string }

// LockWaiting: another run holds the store's writer lock; the run waits for it (Plan.NoWait fails
// instead). HolderPID is 0 when unknown.
type LockWaiting struct {
	Store     string
	HolderPID int
}

// LeftoversRemoved: opening the store removed what an interrupted run had left behind.
type LeftoversRemoved struct {
	Store     string
	Leftovers []layout.Leftover
}

// ImageStarted: the run starts publishing one image. The images of a store are published several
// at once: an ImageStarted comes for each before the LayerProgress of any, and their ImageDone or
// ImageStopped come in the same order.
type ImageStarted struct {
	Store string
	Ref   string
}

// LayerProgress is a layer's progress (see builder.ProgressEvent).
type LayerProgress struct {
	Store string
	builder.ProgressEvent
}

// ImageRetrying: a registry request of the image under way failed for a transient reason and is
// tried again (Message: "reading … failed (…); trying again in 1s (1 of 3)"). The image's Result
// lists its retries too (builder.Result.Retries), for those who show them only if it fails. It
// comes from the goroutines fetching layers, as LayerProgress does.
type ImageRetrying struct {
	Store, Ref, Message string
}

// ImageDone is one image's result: what it did, its warnings, or its error.
type ImageDone struct {
	Store string
	builder.Result
}

// ImageStopped: the run's context ended while the image was under way; it was not published (its
// staging is discarded) and is not in the report.
type ImageStopped struct {
	Store string
	Ref   string
}

// ExtrasFound: the store holds names the recipe no longer lists (a run with a recipe). Action is
// ReportExtras (kept, listed), KeepForFailure (--prune, but Failed images failed) or RemoveExtras
// (a Pruned event follows for each name).
type ExtrasFound struct {
	Store  string
	Names  []string
	Action ExtrasAction
	Failed int
}

// Pruned: --prune removed a name the recipe no longer lists.
type Pruned struct {
	Store string
	Name  string
	layout.Removal
}

// StoreDone: the store's images are published and its extras handled; Report is what --json prints.
type StoreDone struct {
	Report *Report
}

// Registered: the store was added to the storage.conf Plan.Register names (Changed: the file changed).
type Registered struct {
	Store, File string
	Changed     bool
}

// HookFailed: the after or on-failure hook failed after the store's publish had failed already (the
// run's error is the publish's; this one is reported beside it).
type HookFailed struct {
	Store string
	Err   error
}

// RepositoryRecovered: with CVMFS, the run found what a killed run had left in the repository and
// dealt with it before publishing (Message: "repository sw.example.org was left in a transaction by
// cargohold pid 4242 … (killed?); aborted it …"; see cvmfs.Marker).
type RepositoryRecovered struct {
	Store, Message string
}

func (e LockWaiting) StoreDir() string         { return e.Store }
func (e RepositoryRecovered) StoreDir() string { return e.Store }
func (e LeftoversRemoved) StoreDir() string    { return e.Store }
func (e ImageStarted) StoreDir() string        { return e.Store }
func (e LayerProgress) StoreDir() string       { return e.Store }
func (e ImageRetrying) StoreDir() string       { return e.Store }
func (e ImageDone) StoreDir() string           { return e.Store }
func (e ImageStopped) StoreDir() string        { return e.Store }
func (e ExtrasFound) StoreDir() string         { return e.Store }
func (e Pruned) StoreDir() string              { return e.Store }
func (e StoreDone) StoreDir() string           { return e.Report.Store }
func (e Registered) StoreDir() string          { return e.Store }
func (e HookFailed) StoreDir() string          { return e.Store }

// Report is one store's report, as `publish --json` prints it (the schema is documented in the
// README).
type Report struct {
	Store  string           `json:"store"`
	Driver string           `json:"driver"` // overlay or vfs
	Dedup  string           `json:"dedup"`  // how equal files share data: off, reflink, hardlink; auto if no layer was staged
	Images []ImageReport    `json:"images"`
	Failed int              `json:"failed"`
	Extra  []string         `json:"extra,omitempty"`  // names in the store the recipe does not list (not pruned)
	Pruned []layout.Removal `json:"pruned,omitempty"` // what --prune removed
}

// ImageReport is one image of a Report.
type ImageReport struct {
	Reference     string   `json:"reference"`
	Names         []string `json:"names"`
	ID            string   `json:"id,omitempty"`
	Digest        string   `json:"digest,omitempty"`
	Action        string   `json:"action"`
	LayersFetched int      `json:"layers_fetched"`
	BytesFetched  int64    `json:"bytes_fetched"`
	FilesShared   int      `json:"files_shared"`
	BytesShared   int64    `json:"bytes_shared"`
	Seconds       float64  `json:"seconds"`
	Error         string   `json:"error,omitempty"`
	Warnings      []string `json:"warnings,omitempty"`
	Retries       []string `json:"retries,omitempty"`
}

func (r *Report) add(res builder.Result) {
	ir := ImageReport{Reference: res.Ref, Names: res.Names, ID: res.ImageID, Digest: res.ManifestDigest.String(),
		Action: string(res.Action), LayersFetched: res.LayersFetched, BytesFetched: res.BytesFetched,
		FilesShared: res.FilesShared, BytesShared: res.BytesShared, Seconds: res.Duration.Seconds(), Warnings: res.Warnings,
		Retries: res.Retries}
	if ir.Names == nil {
		ir.Names = []string{}
	}
	if res.Err != nil {
		ir.Error = res.Err.Error()
		r.Failed++
	}
	r.Images = append(r.Images, ir)
}

// names is every name the report's images hold.
func (r *Report) names() []string {
	var names []string
	for _, img := range r.Images {
		names = append(names, img.Names...)
	}
	return names
}
