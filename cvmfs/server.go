package cvmfs

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// Server runs the release manager's cvmfs_server. Its commands run to their end even when cargohold
// is asked to stop: a publish cut off half way is worse than one that finishes. Each runs in a process
// group of its own, so that a Ctrl-C in a terminal (SIGINT to the foreground group) reaches cargohold
// only, not a cvmfs_server half way through an ingest or a publish (which could leave a transaction
// open); the systemd unit sends SIGTERM to cargohold only (KillMode=mixed) for the same reason.
type Server struct {
	Command        string    // the cvmfs_server binary; "": $CVMFS_SERVER, else cvmfs_server from PATH
	Stdout, Stderr io.Writer // its output; nil: os.Stdout, os.Stderr
	// Started, if set, is told the pid of each command started (the leader of its process group).
	Started func(pid int)
}

// CommandError is a cvmfs_server command that could not run or failed.
type CommandError struct {
	Args []string // the command line, cvmfs_server first
	Err  error
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("%s failed: %v", strings.Join(e.Args, " "), e.Err)
}

func (e *CommandError) Unwrap() error { return e.Err }

// Transaction opens a transaction: /cvmfs/REPO becomes writable.
func (s Server) Transaction(repo string) error { return s.run(nil, "transaction", repo) }

// Publish publishes the open transaction as the repository's next revision.
func (s Server) Publish(repo string) error { return s.run(nil, "publish", repo) }

// Abort discards the open transaction without asking.
func (s Server) Abort(repo string) error { return s.run(nil, "abort", "-f", repo) }

// Ingest publishes the tar stream as the repository's next revision, its paths relative to the
// repository's directory base, keeping the owners the tar gives (-k; otherwise every file would be the
// repository owner's). It opens a transaction of its own, so none may be open.
func (s Server) Ingest(repo, base string, tar io.Reader) error {
	return s.run(tar, "ingest", "--tar_file", "-", "--base_dir", base, "--keep-ownership", repo)
}

// Remove publishes the repository's next revision without paths (relative to its root, no ':'), as
// an ingest of nothing. Removing a directory that holds a nested catalog and ingesting the same path
// in one ingest makes cvmfs_server fail ("catalog for file ... cannot be found"), so what is to be
// replaced goes first, in a revision of its own.
func (s Server) Remove(repo string, paths []string) error {
	args := []string{"ingest"}
	for _, p := range paths {
		if strings.Contains(p, ":") {
			return fmt.Errorf("cannot ask cvmfs_server ingest to remove %q: it separates paths with ':'", p)
		}
		args = append(args, "--delete", p)
	}
	return s.run(nil, append(args, repo)...)
}

func (s Server) run(stdin io.Reader, args ...string) error {
	command := s.Command
	if command == "" {
		command = os.Getenv("CVMFS_SERVER")
	}
	if command == "" {
		command = "cvmfs_server"
	}
	cmd := exec.Command(command, args...)
	cmd.Stdin = stdin // nil: /dev/null, so that nothing waits for input in a cron run
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = s.Stdout, s.Stderr
	if cmd.Stdout == nil {
		cmd.Stdout = os.Stdout
	}
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	err := cmd.Start()
	if err == nil {
		if s.Started != nil {
			s.Started(cmd.Process.Pid)
		}
		err = cmd.Wait()
	}
	if err != nil {
		return &CommandError{Args: append([]string{command}, args...), Err: err}
	}
	return nil
}
