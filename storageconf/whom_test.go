package storageconf

import (
	"context"
	"errors"
	"os/user"
	"strings"
	"testing"
)

// TestUserTarget: which file conf user writes, and for whose Podman, as root and as a user.
func TestUserTarget(t *testing.T) {
	root, err := user.Lookup("root")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("CONTAINERS_STORAGE_CONF", "/env/storage.conf")
	cases := []struct {
		name      string
		euid      int
		user      string
		file      string
		want      string
		wantUser  int // UID of o.User; -1: no one's (a shared file)
		wantOwner bool
		err       string // ErrInvalid saying this
	}{
		{name: "root for a user: their file", user: "root", want: UserFile(root.HomeDir), wantUser: 0, wantOwner: true},
		{name: "root for a user, another file", user: "root", file: "/srv/conf", want: "/srv/conf", wantUser: 0, wantOwner: true},
		{name: "root, a shared file", file: "/etc/profile-storage.conf", want: "/etc/profile-storage.conf", wantUser: -1},
		{name: "root, neither", err: "give --user NAME, or --file FILE"},
		{name: "root, an unknown user", user: "no-such-user-cargohold", err: "no-such-user-cargohold"},
		{name: "a user: the file their Podman reads", euid: 4321, want: "/env/storage.conf", wantUser: 4321},
		{name: "a user, another file", euid: 4321, file: "/home/u/x.conf", want: "/home/u/x.conf", wantUser: 4321},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			file, o, err := userTarget(c.euid, c.user, c.file, UserOptions{Backup: true})
			if !outcome(t, err, c.err) {
				return
			}
			if file != c.want || !o.Backup {
				t.Errorf("file %s (options %+v), want %s with the options given", file, o, c.want)
			}
			switch {
			case c.wantUser < 0 && o.User != nil:
				t.Errorf("a shared file is read by no one user's Podman; got %+v", *o.User)
			case c.wantUser >= 0 && (o.User == nil || o.User.UID != c.wantUser):
				t.Errorf("user %+v, want uid %d", o.User, c.wantUser)
			}
			if (o.Owner != nil) != c.wantOwner || c.wantOwner && o.Home != root.HomeDir {
				t.Errorf("owner %+v home %q: want the user's (%v)", o.Owner, o.Home, c.wantOwner)
			}
		})
	}
}

// TestCheckRequestViewer: whose view conf check computes, and for which Podman.
func TestCheckRequestViewer(t *testing.T) {
	cases := []struct {
		name    string
		euid    int
		req     CheckRequest
		uid     int
		home    string
		reader  Reader
		err     string
		version string
	}{
		{name: "own view, Podman 4", euid: 4321, req: CheckRequest{Version: "4.3.1", Root: "/sys"}, uid: 4321, reader: Legacy, version: "4.3.1"},
		{name: "own view, Podman 6", req: CheckRequest{Version: "6.0.0"}, uid: 0, reader: Current, version: "6.0.0"},
		{name: "root for a user", req: CheckRequest{User: "root", Version: "5.4.2", Root: "/sys"}, uid: 0, home: "/root", reader: Legacy, version: "5.4.2"},
		{name: "a user for another", euid: 4321, req: CheckRequest{User: "root", Version: "5.4.2"}, err: "conf check --user is for root"},
		{name: "an unknown user", req: CheckRequest{User: "no-such-user-cargohold", Version: "5.4.2"}, err: "no-such-user-cargohold"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := c.req.viewer(context.Background(), c.euid)
			if !outcome(t, err, c.err) {
				return
			}
			if v.UID != c.uid || v.Home != c.home || v.Reader != c.reader || v.Version != c.version || v.Root != c.req.Root || v.Warning != nil {
				t.Errorf("viewer %+v, want uid %d home %q reader %v version %s root %q", v, c.uid, c.home, c.reader, c.version, c.req.Root)
			}
		})
	}
}

// outcome fails t unless err is an invalid request saying want, or, for want "", no error; it says
// whether to go on checking the result.
func outcome(t *testing.T, err error, want string) bool {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatal(err)
	case want != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want)):
		t.Fatalf("error %v, want an invalid request saying %q", err, want)
	}
	return want == ""
}
