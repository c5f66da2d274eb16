package layout

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.podman.io/storage/pkg/lockfile"
	"golang.org/x/sys/unix"
)

// ErrLocked is wrapped by the error of OpenWithOptions with LockOptions.NoWait when another
// process holds the store's writer lock.
var ErrLocked = errors.New("another cargohold run is writing the store")

// LockOptions say what OpenWithOptions does when another process holds the store's writer lock.
type LockOptions struct {
	NoWait bool // fail with ErrLocked instead of waiting
	// Waiting, if set, is called once before OpenWithOptions starts waiting, with the pid of the
	// holder (0 when unknown), so that a cron job's log says why it sits there.
	Waiting func(holderPID int)
}

// lockWriter takes the writer lock as opts say; a wait ends when ctx does.
func (s *Store) lockWriter(ctx context.Context, opts LockOptions) error {
	err := tryLock(s.writer)
	if !errors.Is(err, errBusy) {
		return err
	}
	holder := lockHolder(s.path(writerLockName))
	if opts.NoWait {
		if holder > 0 {
			return fmt.Errorf("%w (pid %d)", ErrLocked, holder)
		}
		return ErrLocked
	}
	if opts.Waiting != nil {
		opts.Waiting(holder)
	}
	return waitLock(ctx, s.writer)
}

// errBusy is tryLock's error for a lock that another holder has: worth waiting for, unlike errors
// such as ENOLCK (an NFS mount without lock support) that waiting would not cure.
var errBusy = errors.New("lock held by another holder")

// inProcess holds one mutex per lock file object (the lockfile package hands out one object per path
// in a process). Holding it before taking the file's lock keeps two holders in this process apart
// without the lockfile package's in-process check, whose error is text only.
var inProcess sync.Map // *lockfile.LockFile → *sync.Mutex

func processMutex(l *lockfile.LockFile) *sync.Mutex {
	m, _ := inProcess.LoadOrStore(l, &sync.Mutex{})
	return m.(*sync.Mutex)
}

// tryLock takes l for writing without waiting: errBusy while this process or another holds it.
func tryLock(l *lockfile.LockFile) error {
	m := processMutex(l)
	if !m.TryLock() {
		return errBusy
	}
	err := l.TryLock()
	if err == nil {
		return nil
	}
	m.Unlock()
	var pathErr *os.PathError
	if !errors.As(err, &pathErr) && (errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES)) {
		return errBusy // fcntl's answer for a lock another process holds (opening the file failing is not)
	}
	return err
}

// unlock releases what tryLock took.
func unlock(l *lockfile.LockFile) {
	l.Unlock()
	processMutex(l).Unlock()
}

// lockHolder returns the pid of a process holding an fcntl lock on the file at path, from
// /proc/locks, or 0. It opens nothing: closing any descriptor of the lock file would drop a lock
// this process holds on it.
func lockHolder(path string) int {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0
	}
	f, err := os.Open("/proc/locks")
	if err != nil {
		return 0
	}
	defer func() { _ = f.Close() }() // read only
	// "1: POSIX  ADVISORY  WRITE 4242 fd:01:1234567 0 EOF"; waiters have "->" after the number.
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] == "->" || fields[5] != want {
			continue
		}
		if pid, err := strconv.Atoi(fields[4]); err == nil && pid > 0 {
			return pid
		}
	}
	return 0
}

// waitLock takes l for writing, waiting while another process (or another Store in this process)
// holds it, until ctx ends (its cause is the error: a signal stops a run waiting for a stuck one).
// Unlike lockfile.Lock, which panics or retries forever when locking fails, it returns errors such as
// ENOLCK (an NFS mount without lock support) so the user sees them. It polls: fcntl has no wait
// that a context can end.
func waitLock(ctx context.Context, l *lockfile.LockFile) error {
	delay := 10 * time.Millisecond
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-timer.C:
		}
		err := tryLock(l)
		if !errors.Is(err, errBusy) {
			return err
		}
		timer.Reset(delay)
		delay = min(2*delay, time.Second)
	}
}
