package cvmfs

import (
	"errors"
	"fmt"
	"os"
)

// staleAction is what a run does, before it publishes, about what an earlier run may have left.
type staleAction int

const (
	noneStale     staleAction = iota // no marker, no transaction
	clearMarker                      // a marker, no transaction: the run ended after its publish or abort, killed before it removed the marker
	abortStale                       // a marker and a transaction: cargohold's own, left by a killed run
	refuseForeign                    // a transaction without a marker: someone else's (an admin's, by hand)
	refuseRunning                    // a marker of a run, or of its cvmfs_server, that still runs
)

// decide says what to do, given the repository's marker (nil: none), whether the repository is in a
// transaction, and whether the run that wrote the marker still runs.
func decide(m *Marker, open, running bool) staleAction {
	switch {
	case m == nil && open:
		return refuseForeign
	case m == nil:
		return noneStale
	case running:
		return refuseRunning
	case open:
		return abortStale
	}
	return clearMarker
}

// ErrForeignTransaction is wrapped by the error of a run that finds the repository in a transaction
// that cargohold did not open: it is left alone.
var ErrForeignTransaction = errors.New("in a transaction that cargohold did not open")

// recoverStale is the first thing a run does: it aborts the transaction a killed run of cargohold
// left open (cvmfs_server abort -f) and removes its marker, saying so loudly; it refuses to go on
// while the repository is in someone else's transaction or another run still publishes there. The
// wrapper's lock (scripts/cvmfs-publish) keeps another cargohold out of the repository meanwhile.
func (p *Publication) recoverStale() error {
	r := p.Repo
	m, err := readMarker(r)
	if err != nil {
		return err
	}
	open, err := r.InTransaction()
	if err != nil {
		return err
	}
	switch decide(m, open, m != nil && m.running()) {
	case refuseForeign:
		return p.foreign()
	case refuseRunning:
		return fmt.Errorf("%s is still publishing into repository %s, or its cvmfs_server is (process group %d): nothing was published; run one publish at a time (scripts/cvmfs-publish takes a lock for that)", m, r.Name, m.Group)
	case clearMarker:
		p.warn("repository %s: %s ended without removing its transaction marker (killed?); the repository is not in a transaction (that run's publish or abort had ended): marker removed", r.Name, m)
		return removeMarker(r)
	case abortStale:
		rev := r.Revision()
		if err := p.Server.Abort(r.Name); err != nil {
			return fmt.Errorf("repository %s was left in a transaction by %s (killed?); aborting it failed: %w; nothing was published: look at the repository (cvmfs_server list, cvmfs_server abort -f %s)", r.Name, m, err, r.Name)
		}
		if rev != "" {
			rev += " "
		}
		p.warn("repository %s was left in a transaction by %s (killed?); aborted it (cvmfs_server abort -f %s); the published revision %sis unchanged", r.Name, m, r.Name, rev)
		return removeMarker(r)
	}
	return nil
}

func (p *Publication) foreign() error {
	return fmt.Errorf("repository %s is %w (no marker %s): someone is changing it by hand, so it is left alone; nothing was published. When they are done (cvmfs_server publish or cvmfs_server abort -f %s), run again",
		p.Repo.Name, ErrForeignTransaction, p.Repo.markerFile(), p.Repo.Name)
}

// opening runs step, a cvmfs_server command that opens a transaction (transaction, or an ingest,
// which opens one of its own), with the marker written first, naming what. A repository already in
// a transaction is someone else's (a run of cargohold's own was aborted by recoverStale): refused.
// The marker stays until endMarker.
func (p *Publication) opening(what string, step func() error) error {
	open, err := p.Repo.InTransaction()
	if err != nil {
		return err
	}
	if open {
		return p.foreign()
	}
	if p.marker == nil {
		p.marker = newMarker(p.Repo.Name, p.Store, what)
		// while the marker stands, it names each cvmfs_server command's process group, which a
		// kill of cargohold alone leaves running
		p.Server.Started = func(pid int) { p.marker.Group = pid; _ = writeMarker(p.Repo, p.marker) }
	}
	p.marker.Opening = what
	p.marker.Group = 0
	if err := writeMarker(p.Repo, p.marker); err != nil {
		return err
	}
	err = step()
	if err != nil && what != "transaction" {
		// an ingest that fails aborts its own transaction; one left open (its abort failed) is ours
		if open, _ := p.Repo.InTransaction(); open {
			p.leftOpen = true
		}
	}
	return err
}

// endMarker removes the marker once no cvmfs_server command of this run runs any more, unless this
// run leaves its own transaction open (an abort failed): then the next run aborts it.
func (p *Publication) endMarker() error {
	if p.marker == nil {
		return nil
	}
	p.Server.Started = nil
	if p.leftOpen {
		return fmt.Errorf("repository %s is left in the transaction this run opened; the next run aborts it (or run cvmfs_server abort -f %s)", p.Repo.Name, p.Repo.Name)
	}
	p.marker = nil
	if err := removeMarker(p.Repo); err != nil {
		return fmt.Errorf("removing cargohold's transaction marker of repository %s: %w", p.Repo.Name, err)
	}
	return nil
}

func (p *Publication) warn(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	if p.Warn != nil {
		p.Warn(msg)
		return
	}
	fmt.Fprintln(os.Stderr, "warning: "+msg)
}
