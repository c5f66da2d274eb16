// Package cvmfs is what cargohold knows about CernVM-FS, in one place: which repository a store lives
// in, what a repository's configuration says, how cvmfs_server is run, and how a store is published
// into a repository (Publication). The facts it relies on were measured on a real CVMFS 2.12.0
// stratum-0 (docs/CVMFS.md):
//
//   - a transaction is an overlayfs mount of /cvmfs/REPO: it refuses to create an overlay whiteout
//     (a 0/0 character device), so an image that deletes files cannot be written there;
//   - `cvmfs_server ingest --tar_file` stores a 0/0 character device as it is, and read through a
//     client mount it acts as a whiteout for the overlay mounts of Podman; ingest drops every xattr
//     (file capabilities too), which a later transaction can set (with CVMFS_INCLUDE_XATTRS=true);
//   - ingest and a transaction each publish a revision of their own, and ingest cannot run while a
//     transaction is open;
//   - every hard link becomes a file of its own (the same content, stored once), in the same
//     directory or not: overlayfs-based repositories keep no hard links;
//   - /cvmfs/REPO on the release manager is itself an overlay mount, which hides the 0/0 devices of
//     the published tree; the repository's client mount (CVMFS_SPOOL_DIR/rdonly) shows it as nodes do.
package cvmfs

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Where CVMFS keeps repositories on a release manager machine.
const (
	MountRoot  = "/cvmfs"                    // /cvmfs/REPO: the repository, writable in a transaction
	ConfigRoot = "/etc/cvmfs/repositories.d" // REPO/server.conf
)

// nameRE is what a repository name may be (a name goes into commands and file names).
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// CheckName refuses what cannot be a repository name.
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%q is not a CVMFS repository name", name)
	}
	return nil
}

// RepoOfStore returns the repository a store lives in: "sw.example.org" for
// /cvmfs/sw.example.org/images; "" for a store outside /cvmfs.
func RepoOfStore(store string) string {
	rest, ok := strings.CutPrefix(filepath.Clean(store), MountRoot+"/")
	if !ok {
		return ""
	}
	repo, _, _ := strings.Cut(rest, "/")
	return repo
}

// ResolveRepo returns the repository of the store at dir (absolute): the configured one
// (cvmfs-repo), else the directory below /cvmfs/ that holds the store. Both given and different is an
// error: a transaction would open one repository while the store is written in another.
func ResolveRepo(dir, configured string) (string, error) {
	inRepo := RepoOfStore(dir)
	switch {
	case configured == "":
		return inRepo, nil
	case inRepo != "" && inRepo != configured:
		return "", fmt.Errorf("the store %s is in CVMFS repository %s, not in %s (cvmfs-repo)", dir, inRepo, configured)
	}
	return configured, CheckName(configured)
}

// Repo is a repository on this release manager machine, as its server.conf describes it.
type Repo struct {
	Name string
	// Mountpoint is /cvmfs/NAME, writable in a transaction. Outside one it is a read-only overlay
	// mount that hides the 0/0 devices of the published tree.
	Mountpoint string
	// ClientView is the repository's own client mount (CVMFS_SPOOL_DIR/rdonly): the published
	// revision as nodes see it, whiteouts included.
	ClientView string
	// IncludeXattrs is CVMFS_INCLUDE_XATTRS=true: a transaction keeps extended attributes (without
	// it CVMFS drops them all, file capabilities too).
	IncludeXattrs bool
	// ConfigFile is the server.conf read.
	ConfigFile string
	// Spool is CVMFS_SPOOL_DIR (/var/spool/cvmfs/NAME): the repository's working area on this
	// machine, where CVMFS flags an open transaction and cargohold keeps its Marker.
	Spool string
}

// ErrNoRepo is wrapped by Load's error for a repository this machine does not hold.
var ErrNoRepo = errors.New("no such CVMFS repository on this machine")

// Load reads the configuration of repository name from configRoot (ConfigRoot but in tests).
func Load(configRoot, name string) (*Repo, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	file := filepath.Join(configRoot, name, "server.conf")
	conf, err := readConf(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s (%s is missing): publish on the repository's release manager machine", ErrNoRepo, name, file)
	} else if err != nil {
		return nil, err
	}
	spool := conf["CVMFS_SPOOL_DIR"]
	if spool == "" {
		return nil, fmt.Errorf("%s sets no CVMFS_SPOOL_DIR: is %s a stratum-0 repository?", file, name)
	}
	return &Repo{
		Name:          name,
		Mountpoint:    filepath.Join(MountRoot, name),
		ClientView:    filepath.Join(spool, "rdonly"),
		IncludeXattrs: conf["CVMFS_INCLUDE_XATTRS"] == "true",
		ConfigFile:    file,
		Spool:         spool,
	}, nil
}

// readConf reads the KEY=VALUE lines of a server.conf (a shell fragment; the last assignment wins,
// quotes around a value are removed).
func readConf(file string) (map[string]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }() // read only
	conf := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		key, value, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		if len(value) >= 2 && (value[0] == '"' || value[0] == '\'') && value[len(value)-1] == value[0] {
			value = value[1 : len(value)-1]
		}
		conf[strings.TrimSpace(key)] = value
	}
	return conf, sc.Err()
}

// Rel returns the path of dir inside the repository ("images" for /cvmfs/REPO/images, "." for the
// repository's root), or an error for a path outside it.
func (r *Repo) Rel(dir string) (string, error) {
	rel, err := filepath.Rel(r.Mountpoint, filepath.Clean(dir))
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("the store %s is not inside repository %s (%s)", dir, r.Name, r.Mountpoint)
	}
	return filepath.ToSlash(rel), nil
}
