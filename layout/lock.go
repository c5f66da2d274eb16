package layout

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"go.podman.io/storage/pkg/lockfile"
	"golang.org/x/sys/unix"
)

// ErrLocked is wrapped by the error of Open with LockOptions.NoWait when another process holds the
// store's writer lock.
var ErrLocked = errors.New("another cargohold run is writing the store")

// LockOptions say what Open does when another process holds the store's writer lock.
type LockOptions struct {
	NoWait bool // fail with ErrLocked instead of waiting
	// Waiting, if set, is called once before Open starts waiting, with the pid of the holder
	// (0 when unknown), so that a cron job's log says why it sits there.
	Waiting func(holderPID int)
}

// lockWriter takes the writer lock as opts say.
func (s *Store) lockWriter(opts LockOptions) error {
	err := s.writer.TryLock()
	if err == nil {
		return nil
	}
	if !lockBusy(err) {
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
	return waitLock(s.writer)
}

// lockBusy tells a lock held by someone else from a lock that cannot be taken at all (such as ENOLCK
// on an NFS mount without lock support), which waiting would not cure.
func lockBusy(err error) bool {
	var pathErr *os.PathError
	if errors.As(err, &pathErr) {
		return false // opening the file failed
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		return errno == unix.EAGAIN || errno == unix.EACCES
	}
	// The lockfile package's message when another user of the same LockFile in this process holds it.
	return strings.Contains(err.Error(), "resource temporarily unavailable")
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
	defer f.Close()
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
// holds it. Unlike lockfile.Lock, which panics or retries forever when locking fails, it returns
// errors such as ENOLCK (an NFS mount without lock support) so the user sees them.
func waitLock(l *lockfile.LockFile) error {
	delay := 10 * time.Millisecond
	for {
		err := l.TryLock()
		if err == nil || !lockBusy(err) {
			return err
		}
		time.Sleep(delay)
		delay = min(2*delay, time.Second)
	}
}
