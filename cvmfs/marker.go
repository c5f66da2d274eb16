package cvmfs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.podman.io/storage/pkg/ioutils"
	"golang.org/x/sys/unix"
)

// A Marker says that cargohold is opening, or has opened, a transaction in a repository: it is
// written (durably) before every cvmfs_server command that opens one (transaction; an ingest, which
// opens one of its own) and removed once the publish or the abort has ended. A run that finds one
// knows that a transaction open in the repository is cargohold's, left by a run that was killed
// (SIGKILL, the OOM killer, a power cut), and aborts it; a transaction without a marker is someone
// else's, and is left alone.
//
// It lives in the repository's spool dir (CVMFS_SPOOL_DIR, /var/spool/cvmfs/REPO), beside CVMFS's own
// flag of an open transaction (in_transaction.lock): on the release manager's local disk, so it
// survives a reboot as the open transaction does; outside /cvmfs/REPO and the published tree, so no
// node ever sees it; one per repository, whatever store or recipe the run had; and `cvmfs_server
// rmfs` removes it with the repository, so it can never speak of a repository made again later.
type Marker struct {
	Repo    string    `json:"repository"`
	Store   string    `json:"store"`
	Opening string    `json:"opening"` // the command run when the marker was (re)written: "ingest", "transaction"
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"` // when the marker was first written
	// The running cvmfs_server command's process group (cvmfs_server runs in one of its own), 0
	// before the first: a killed cargohold's cvmfs_server runs on to its end.
	Group int `json:"cvmfs_server_group,omitempty"`
	// BootID and PIDStart (the process's start time, in clock ticks since boot) tell this process
	// from another that got its pid later, or after a reboot.
	BootID   string `json:"boot_id"`
	PIDStart uint64 `json:"pid_start"`
}

// markerName is the marker's file name in the spool dir.
const markerName = "cargohold-transaction.json"

// transactionFlag is the file whose existence means the repository is in a transaction: cvmfs_server
// (is_in_transaction, `cvmfs_server list`'s "in transaction") and cvmfs_publish check the same file.
const transactionFlag = "in_transaction.lock"

func (r *Repo) markerFile() string { return filepath.Join(r.Spool, markerName) }

// InTransaction says whether the repository is in a transaction (opened by anyone).
func (r *Repo) InTransaction() (bool, error) {
	_, err := os.Stat(filepath.Join(r.Spool, transactionFlag))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Revision is the repository's published revision, as its client mount says ("" if unknown).
func (r *Repo) Revision() string {
	buf := make([]byte, 32)
	n, err := unix.Getxattr(r.ClientView, "user.revision", buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// newMarker is the marker of this process, about to run opening in store.
func newMarker(repo, store, opening string) *Marker {
	host, _ := os.Hostname() // for the message only
	m := &Marker{Repo: repo, Store: store, Opening: opening, Host: host, PID: os.Getpid(), Started: time.Now().UTC(), BootID: bootID()}
	m.PIDStart, _ = processStart(m.PID)
	return m
}

// writeMarker writes m durably: a run killed right after must find it, even after a power cut.
func writeMarker(r *Repo, m *Marker) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err == nil {
		err = ioutils.AtomicWriteFile(r.markerFile(), append(data, '\n'), 0o644) // fsyncs the file
	}
	if err == nil {
		err = syncDir(r.Spool)
	}
	if err != nil {
		return fmt.Errorf("writing cargohold's transaction marker for repository %s: %w", r.Name, err)
	}
	return nil
}

// readMarker returns the repository's marker, nil if there is none.
func readMarker(r *Repo) (*Marker, error) {
	data, err := os.ReadFile(r.markerFile())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	m := &Marker{}
	if err := json.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("%s is not a marker cargohold wrote (%w): look at it, and remove it", r.markerFile(), err)
	}
	return m, nil
}

// removeMarker removes the marker durably: one that came back after a power cut could make a later
// run abort a transaction that is not cargohold's.
func removeMarker(r *Repo) error {
	if err := os.Remove(r.markerFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return syncDir(r.Spool)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// running says whether the run that wrote m, or the cvmfs_server command it ran, still runs.
func (m *Marker) running() bool {
	if m.BootID == "" || m.BootID != bootID() {
		return false // written before a reboot: nothing of it runs
	}
	if start, err := processStart(m.PID); err == nil && start == m.PIDStart {
		return true
	}
	return m.Group > 0 && groupAlive(m.Group)
}

func (m *Marker) String() string {
	return fmt.Sprintf("cargohold pid %d on %s at %s (running %s, store %s)", m.PID, m.Host, m.Started.Format(time.RFC3339), m.Opening, m.Store)
}

func bootID() string {
	data, _ := os.ReadFile("/proc/sys/kernel/random/boot_id") // "": unknown, never matches
	return strings.TrimSpace(string(data))
}

// procStat returns the fields of /proc/PID/stat after the command name (field 3 first).
func procStat(pid int) ([]string, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(data, ')') // the name may hold spaces and parentheses
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	return strings.Fields(string(data[i+1:])), nil
}

// processStart is field 22 of /proc/PID/stat: when the process started, in clock ticks since boot;
// an error for a process that has ended (a zombie too: killed, not yet reaped by its parent).
func processStart(pid int) (uint64, error) {
	f, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	if ended(f) {
		return 0, fmt.Errorf("process %d has ended", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// ended says whether the /proc/PID/stat fields (procStat) are those of a zombie or dead process.
func ended(f []string) bool { return f[0] == "Z" || f[0] == "X" }

// groupAlive says whether a process of process group pgid runs (field 5 of /proc/PID/stat).
func groupAlive(pgid int) bool {
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		pid, err := strconv.Atoi(filepath.Base(p))
		if err != nil {
			continue
		}
		if f, err := procStat(pid); err == nil && len(f) > 2 && f[2] == strconv.Itoa(pgid) && !ended(f) {
			return true
		}
	}
	return false
}
