package storageconf

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"strconv"
)

// Whose configuration a conf command reads or writes: the process's own user, or, for root, another
// user named on the command line.

// LookupUser is another user's view of the configuration (root acting for them): home, name, groups.
// An unknown user is ErrInvalid.
func LookupUser(name string) (Lookup, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return Lookup{}, invalid(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	l := Lookup{UID: uid, Home: u.HomeDir, Name: u.Username, GIDs: []int{gid}}
	groups, _ := u.GroupIds() // without them only the primary group counts for reading the store
	for _, g := range groups {
		if id, err := strconv.Atoi(g); err == nil && id != gid {
			l.GIDs = append(l.GIDs, id)
		}
	}
	return l, nil
}

// UserTarget is the file conf user writes, given the user (--user NAME, root only) and the file
// (--file) asked for, and o completed with whose Podman reads it: for NAME that user's home,
// ownership and storage (their file unless file is given); for a user writing their own file, theirs
// (by default the one their Podman reads); for a file root shares with many users, no one's. Root
// giving neither is ErrInvalid: root's own Podman reads SystemFile (conf patch).
func UserTarget(name, file string, o UserOptions) (string, UserOptions, error) {
	return userTarget(os.Geteuid(), name, file, o)
}

func userTarget(euid int, name, file string, o UserOptions) (string, UserOptions, error) {
	switch {
	case name != "":
		l, err := LookupUser(name)
		if err != nil {
			return "", o, err
		}
		o.Home, o.Owner, o.User = l.Home, &Owner{UID: l.UID, GID: l.GIDs[0]}, &l
		if file == "" {
			return UserFile(l.Home), o, nil
		}
	case file == "" && euid == 0:
		return "", o, invalid(fmt.Errorf("conf user writes a rootless user's file: give --user NAME, or --file FILE for a file to share; " +
			"root's own Podman reads " + SystemFile + " (use conf patch)"))
	case euid != 0:
		o.User = &Lookup{UID: euid}
		if u, err := user.LookupId(strconv.Itoa(euid)); err == nil {
			o.User.Name = u.Username
		}
		if file == "" {
			own, err := CurrentUserFile()
			if err != nil {
				return "", o, invalid(err)
			}
			return own, o, nil
		}
	}
	return file, o, nil
}

// CheckRequest is whose view conf check computes, and of which Podman.
type CheckRequest struct {
	User    string // another user's view (root only); "" the process's own
	Version string // the Podman version to assume; "" asks the installed podman
	Root    string // Lookup.Root (tests)
}

// Viewer is a CheckRequest's answer: the view to compute (Check) and the Podman version it is for.
type Viewer struct {
	Lookup
	Version string // as given, as podman --version said, or "unknown"
	// Warning says why the version is unknown (podman --version failed): Podman up to 5.x is assumed.
	Warning error
}

// Viewer is the view conf check computes: another user's (root only, else ErrInvalid) or the
// process's own, read by the Podman of Version or, without one, the installed Podman (ctx ends
// podman --version).
func (r CheckRequest) Viewer(ctx context.Context) (Viewer, error) {
	return r.viewer(ctx, os.Geteuid())
}

func (r CheckRequest) viewer(ctx context.Context, euid int) (Viewer, error) {
	v := Viewer{Lookup: Lookup{UID: euid, Reader: ReaderFor(r.Version), Root: r.Root}, Version: r.Version}
	if r.User != "" {
		if euid != 0 {
			return v, invalid(fmt.Errorf("conf check --user is for root: run conf check as %s instead", r.User))
		}
		u, err := LookupUser(r.User)
		if err != nil {
			return v, err
		}
		u.Reader, u.Root = v.Reader, v.Root
		v.Lookup = u
	}
	if r.Version != "" {
		return v, nil
	}
	reader, version, err := DetectReader(ctx)
	if err != nil {
		v.Warning = fmt.Errorf("%w; assuming Podman up to 5.x", err)
		version = "unknown"
	}
	v.Reader, v.Version = reader, version
	return v, nil
}
