package storageconf

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
	"go.podman.io/storage/pkg/configfile"
	"go.podman.io/storage/types"
)

// Reader is the way a Podman version reads storage.conf.
type Reader int

const (
	// Legacy is containers/storage before its configuration rework (Podman up to 5.x):
	// CONTAINERS_STORAGE_CONF, else one file; rootful: /etc, else /usr/share; rootless:
	// only the user's own file, whose absence means no additional stores at all.
	Legacy Reader = iota
	// Current is the reworked reader (Podman 6 and later): the first main file of
	// CONTAINERS_STORAGE_CONF, the user's, /etc's, /usr/share's, then storage.conf.d
	// drop-ins (not with CONTAINERS_STORAGE_CONF), a list replacing earlier ones unless
	// it has {append = true}.
	Current
)

func (r Reader) String() string {
	if r == Current {
		return "Podman 6+ (main file and storage.conf.d drop-ins)"
	}
	return "Podman up to 5.x (one file; rootless users only their own)"
}

// Lookup says whose view of the configuration to compute. The environment
// (CONTAINERS_STORAGE_CONF, XDG_CONFIG_HOME, HOME, STORAGE_DRIVER, STORAGE_OPTS) is the
// process's, as for Podman started from here.
type Lookup struct {
	UID    int    // the user Podman runs as; 0 is rootful
	Reader Reader // how that Podman reads storage.conf
	Root   string // prefix for /etc and /usr/share (tests); "" is /
}

// Effective is what Podman makes of the storage.conf files.
type Effective struct {
	Files  []string // the files read, in order
	Driver string   // "" if none is set: Podman picks one
	Stores []string // the additional image stores in force
	// MountProgram is the overlay mount program configured ("" none).
	MountProgram string
	Notes        []string // how the result came about, one sentence each
}

// Resolve reads the storage.conf files the given Podman reads, in its order.
func Resolve(l Lookup) (*Effective, error) {
	var eff *Effective
	var err error
	if l.Reader == Current {
		eff, err = resolveCurrent(l)
	} else {
		eff, err = resolveLegacy(l)
	}
	if err != nil {
		return nil, err
	}
	if d := os.Getenv("STORAGE_DRIVER"); d != "" {
		eff.Driver = d
		eff.Notes = append(eff.Notes, "STORAGE_DRIVER sets the driver to "+d+".")
	}
	if opts, ok := os.LookupEnv("STORAGE_OPTS"); ok {
		// Replaces every driver option, additional stores included.
		eff.Stores = nil
		for _, o := range strings.Split(opts, ",") {
			if k, v, ok := strings.Cut(o, "="); ok && strings.HasSuffix(k, "imagestore") {
				eff.Stores = append(eff.Stores, v)
			}
		}
		eff.Notes = append(eff.Notes, "STORAGE_OPTS is set: it replaces every driver option of the files, additional stores included.")
	}
	return eff, nil
}

// fileConfig is what one storage.conf says about stores, decoded as containers/storage does.
type fileConfig struct {
	Storage struct {
		Driver  string
		Options struct {
			AdditionalImageStores []any  `toml:"additionalimagestores"`
			MountProgram          string `toml:"mount_program"`
			Overlay               struct {
				MountProgram string `toml:"mount_program"`
			}
		}
	}
}

func resolveLegacy(l Lookup) (*Effective, error) {
	eff := &Effective{}
	etc, usr := filepath.Join("/", l.Root, SystemFile), filepath.Join("/", l.Root, DistributionFile)
	var file string
	if env, ok := os.LookupEnv("CONTAINERS_STORAGE_CONF"); ok {
		file = env
		eff.Notes = append(eff.Notes, "CONTAINERS_STORAGE_CONF names "+env+": Podman reads that file only.")
	} else if l.UID != 0 {
		user, err := userConfigDir()
		if err != nil {
			return nil, err
		}
		file = filepath.Join(user, "storage.conf")
		if !exists(file) {
			eff.Notes = append(eff.Notes, "Rootless Podman up to 5.x reads only "+file+" (missing): "+
				"the additionalimagestores of "+etc+" and "+usr+" do not apply to rootless users.")
			// The driver still comes from the system file.
			for _, f := range []string{etc, usr} {
				if exists(f) {
					var fc fileConfig
					if _, err := toml.DecodeFile(f, &fc); err != nil {
						return nil, tomlError(f, err)
					}
					eff.Driver = fc.Storage.Driver
					break
				}
			}
			return eff, nil
		}
	} else {
		file = usr
		if xdg, ok := os.LookupEnv("XDG_CONFIG_HOME"); ok && exists(filepath.Join(xdg, "containers", "storage.conf")) {
			file = filepath.Join(xdg, "containers", "storage.conf")
		} else if exists(etc) {
			file = etc
		}
	}
	if !exists(file) {
		missing := file + " does not exist"
		if file == usr {
			missing = "neither " + etc + " nor " + usr + " exists"
		}
		eff.Notes = append(eff.Notes, missing+": Podman uses its defaults, without additional image stores.")
		return eff, nil
	}
	var fc fileConfig
	if _, err := toml.DecodeFile(file, &fc); err != nil {
		return nil, tomlError(file, err)
	}
	eff.Files = []string{file}
	eff.Driver = fc.Storage.Driver
	eff.MountProgram = cmp.Or(fc.Storage.Options.Overlay.MountProgram, fc.Storage.Options.MountProgram)
	for _, v := range fc.Storage.Options.AdditionalImageStores {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%s: additionalimagestores holds %v, which Podman up to 5.x cannot read "+
				"({append = true} is for storage.conf.d drop-ins of Podman 6+): remove it", file, v)
		}
		eff.Stores = append(eff.Stores, s)
	}
	eff.Notes = append(eff.Notes, fmt.Sprintf("%s lists %d store(s).", file, len(eff.Stores)))
	return eff, nil
}

func resolveCurrent(l Lookup) (*Effective, error) {
	eff := &Effective{}
	// The very types and file search of containers/storage, so that the merge (and its
	// quirks) are theirs.
	var conf types.TomlConfig
	search := &configfile.File{
		Name: "storage", Extension: "conf", EnvironmentName: "CONTAINERS_STORAGE_CONF",
		UserId: l.UID, RootForImplicitAbsolutePaths: l.Root,
	}
	if env := os.Getenv("CONTAINERS_STORAGE_CONF"); env != "" {
		eff.Notes = append(eff.Notes, "CONTAINERS_STORAGE_CONF names "+env+": Podman reads it instead of the usual files, and no drop-ins.")
	}
	for item, err := range configfile.Read(search) {
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(item.Reader)
		if err != nil {
			return nil, err
		}
		before := slices.Clone(conf.Storage.Options.AdditionalImageStores.Values)
		md, err := toml.Decode(string(data), &conf)
		if err != nil {
			return nil, tomlError(item.Name, err)
		}
		eff.Files = append(eff.Files, item.Name)
		if !md.IsDefined(storesPath...) {
			continue
		}
		after := conf.Storage.Options.AdditionalImageStores.Values
		added := after[min(len(before), len(after)):]
		switch {
		case len(after) >= len(before) && slices.Equal(after[:len(before)], before) && len(before) > 0:
			eff.Notes = append(eff.Notes, fmt.Sprintf("%s adds %s ({append = true}).", item.Name, listOrNone(added)))
		case len(before) > 0:
			eff.Notes = append(eff.Notes, fmt.Sprintf("%s replaces the list (%s) with %s: write its list with {append = true} to keep the others.",
				item.Name, listOrNone(before), listOrNone(after)))
		default:
			eff.Notes = append(eff.Notes, fmt.Sprintf("%s lists %s.", item.Name, listOrNone(after)))
		}
	}
	if len(eff.Files) == 0 {
		eff.Notes = append(eff.Notes, "No storage.conf file exists: no additional image stores.")
	}
	eff.Driver = conf.Storage.Driver
	eff.Stores = slices.Clone(conf.Storage.Options.AdditionalImageStores.Values)
	eff.MountProgram = cmp.Or(conf.Storage.Options.Overlay.MountProgram, conf.Storage.Options.MountProgram)
	return eff, nil
}

// userConfigDir is $XDG_CONFIG_HOME/containers, else $HOME/.config/containers.
func userConfigDir() (string, error) {
	if xdg, ok := os.LookupEnv("XDG_CONFIG_HOME"); ok {
		return filepath.Join(xdg, "containers"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", errors.New("cannot find the user's configuration: neither XDG_CONFIG_HOME nor HOME is set")
	}
	return filepath.Join(home, ".config", "containers"), nil
}

// CurrentUserFile is the storage.conf the current user's Podman reads:
// $CONTAINERS_STORAGE_CONF, else $XDG_CONFIG_HOME/containers/storage.conf, else
// ~/.config/containers/storage.conf.
func CurrentUserFile() (string, error) {
	if env := os.Getenv("CONTAINERS_STORAGE_CONF"); env != "" {
		return env, nil
	}
	dir, err := userConfigDir()
	return filepath.Join(dir, "storage.conf"), err
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "no stores"
	}
	return strings.Join(l, ", ")
}
