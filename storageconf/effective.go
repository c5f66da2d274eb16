package storageconf

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
// (CONTAINERS_STORAGE_CONF, XDG_CONFIG_HOME, XDG_DATA_HOME, HOME, STORAGE_DRIVER, STORAGE_OPTS) is
// the process's, as for Podman started from here, unless Home names another user's view.
type Lookup struct {
	UID    int    // the user Podman runs as; 0 is rootful
	Reader Reader // how that Podman reads storage.conf
	Root   string // prefix for /etc, /usr/share and /var/lib (tests); "" is /
	// Another user's view, computed by root (conf check --user, conf user --user): their home
	// directory, name and groups. The process's environment is not theirs and is ignored.
	Home, Name string
	GIDs       []int
}

// getenv is the variable of the environment Podman runs with (nothing for another user's view,
// whose environment is not known).
func (l Lookup) getenv(name string) (string, bool) {
	if l.Home != "" {
		return "", false
	}
	return os.LookupEnv(name)
}

// Effective is what Podman makes of the storage.conf files.
type Effective struct {
	Files  []string // the files read, in order
	Driver string   // "" if none is set: Podman picks one
	Stores []string // the additional image stores in force
	// MountProgram is the overlay mount program configured ("" none).
	MountProgram string
	// DriverOptions: the configuration gives the driver options (a store, a mount program, mount
	// options...), which Podman up to 5.x hands to the driver under the configured driver's name.
	DriverOptions bool
	// GraphRoot is Podman's own storage for this user: the driver recorded there wins over Driver.
	GraphRoot string
	// Unset names what rootful Podman up to 5.x refuses to start without ("runroot", "graphroot").
	Unset []string
	Notes []string // how the result came about, one sentence each
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
	if d, _ := l.getenv("STORAGE_DRIVER"); d != "" {
		eff.Driver = d
		eff.Notes = append(eff.Notes, "STORAGE_DRIVER sets the driver to "+d+".")
	}
	if opts, ok := l.getenv("STORAGE_OPTS"); ok {
		// Replaces every driver option, additional stores included.
		eff.Stores = nil
		eff.DriverOptions = opts != ""
		for _, o := range strings.Split(opts, ",") {
			if k, v, ok := strings.Cut(o, "="); ok && strings.HasSuffix(k, "imagestore") {
				eff.Stores = append(eff.Stores, v)
			}
		}
		eff.Notes = append(eff.Notes, "STORAGE_OPTS is set: it replaces every driver option of the files, additional stores included.")
	}
	if l.Home != "" {
		eff.Notes = append(eff.Notes, "This is the view of "+l.Name+" without environment variables "+
			"(CONTAINERS_STORAGE_CONF, XDG_CONFIG_HOME, STORAGE_DRIVER): run conf check as "+l.Name+" to include theirs.")
	}
	return eff, nil
}

// fileConfig is what one storage.conf says about stores, decoded as containers/storage does.
type fileConfig struct {
	Storage struct {
		Driver              string
		RunRoot             string `toml:"runroot"`
		GraphRoot           string `toml:"graphroot"`
		RootlessStoragePath string `toml:"rootless_storage_path"`
		Options             struct {
			AdditionalImageStores []any  `toml:"additionalimagestores"`
			MountProgram          string `toml:"mount_program"`
			Overlay               struct {
				MountProgram string `toml:"mount_program"`
			}
		}
	}
	driverOptions bool
}

// decodeFile reads one storage.conf; nil for a file that does not exist.
func decodeFile(file string) (*fileConfig, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	return decodeText(file, data)
}

func decodeText(name string, data []byte) (*fileConfig, error) {
	var fc fileConfig
	if _, err := toml.Decode(string(data), &fc); err != nil {
		return nil, tomlError(name, err)
	}
	fc.driverOptions = hasDriverOptions(data)
	return &fc, nil
}

// hasDriverOptions reports whether a storage.conf text sets a driver option: a store, or any other
// non-empty key under [storage.options].
func hasDriverOptions(data []byte) bool {
	var doc struct {
		Storage struct{ Options map[string]any }
	}
	if _, err := toml.Decode(string(data), &doc); err != nil {
		return false
	}
	for _, v := range doc.Storage.Options {
		switch v := v.(type) {
		case []any:
			if len(v) > 0 {
				return true
			}
		case map[string]any:
			if len(v) > 0 {
				return true
			}
		default:
			return true
		}
	}
	return false
}

// legacyFile is the one file Podman up to 5.x reads for l, and whether it is the rootless user's own.
func legacyFile(l Lookup, eff *Effective) (file string, own bool, err error) {
	etc, usr := filepath.Join("/", l.Root, SystemFile), filepath.Join("/", l.Root, DistributionFile)
	if env, ok := l.getenv("CONTAINERS_STORAGE_CONF"); ok {
		eff.Notes = append(eff.Notes, "CONTAINERS_STORAGE_CONF names "+env+": Podman reads that file only.")
		return env, false, nil
	}
	if l.UID != 0 {
		dir, err := l.configDir()
		return filepath.Join(dir, "storage.conf"), true, err
	}
	if xdg, ok := l.getenv("XDG_CONFIG_HOME"); ok && exists(filepath.Join(xdg, "containers", "storage.conf")) {
		return filepath.Join(xdg, "containers", "storage.conf"), false, nil
	}
	if exists(etc) {
		return etc, false, nil
	}
	return usr, false, nil
}

// systemConfig is the system-wide file of Podman up to 5.x (/etc, else /usr/share), nil if none.
func systemConfig(l Lookup) (*fileConfig, error) {
	for _, f := range []string{SystemFile, DistributionFile} {
		fc, err := decodeFile(filepath.Join("/", l.Root, f))
		if fc != nil || err != nil {
			return fc, err
		}
	}
	return nil, nil
}

func resolveLegacy(l Lookup) (*Effective, error) {
	eff := &Effective{}
	file, own, err := legacyFile(l, eff)
	if err != nil {
		return nil, err
	}
	fc, err := decodeFile(file)
	if err != nil {
		return nil, err
	}
	system := fc
	if l.UID != 0 && (own || fc == nil) {
		// Rootless defaults (the driver, rootless_storage_path) come from the system file.
		if system, err = systemConfig(l); err != nil {
			return nil, err
		}
	}
	if err := eff.setGraphRoot(l, fc, system); err != nil {
		return nil, err
	}
	if fc == nil {
		return eff.withoutFile(l, file, own, system), nil
	}
	eff.Files = []string{file}
	eff.Driver = fc.Storage.Driver
	eff.MountProgram = cmp.Or(fc.Storage.Options.Overlay.MountProgram, fc.Storage.Options.MountProgram)
	eff.DriverOptions = fc.driverOptions
	if l.UID == 0 {
		eff.Unset = unsetRoots(fc)
	}
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

// withoutFile is the configuration when the file Podman up to 5.x reads does not exist.
func (eff *Effective) withoutFile(l Lookup, file string, own bool, system *fileConfig) *Effective {
	etc, usr := filepath.Join("/", l.Root, SystemFile), filepath.Join("/", l.Root, DistributionFile)
	switch {
	case own:
		eff.Notes = append(eff.Notes, "Rootless Podman up to 5.x reads only "+file+" (missing): "+
			"the additionalimagestores of "+etc+" and "+usr+" do not apply to rootless users.")
		if system != nil {
			eff.Driver = system.Storage.Driver // the driver still comes from the system file
		}
	case file == usr:
		eff.Notes = append(eff.Notes, "neither "+etc+" nor "+usr+" exists: Podman uses its defaults, without additional image stores.")
	default:
		eff.Notes = append(eff.Notes, file+" does not exist: Podman uses its defaults, without additional image stores.")
	}
	return eff
}

// unsetRoots names the roots a rootful file leaves unset: Podman up to 5.x then fails on every
// command ("runroot must be set"), --version included.
func unsetRoots(fc *fileConfig) []string {
	var unset []string
	if fc.Storage.RunRoot == "" {
		unset = append(unset, "runroot")
	}
	if fc.Storage.GraphRoot == "" {
		unset = append(unset, "graphroot")
	}
	return unset
}

// setGraphRoot works out Podman's own storage for l as containers/storage does: the file's
// graphroot; rootless, else a rootless_storage_path (the file's, else the system file's), else
// $XDG_DATA_HOME/containers/storage or ~/.local/share/containers/storage.
func (eff *Effective) setGraphRoot(l Lookup, fc, system *fileConfig) error {
	var path string
	switch {
	case fc != nil && fc.Storage.GraphRoot != "":
		path = fc.Storage.GraphRoot
	case l.UID == 0:
		path = filepath.Join("/", l.Root, defaultGraphRoot)
	case fc != nil && fc.Storage.RootlessStoragePath != "":
		path = fc.Storage.RootlessStoragePath
	case system != nil && system.Storage.RootlessStoragePath != "":
		path = system.Storage.RootlessStoragePath
	default:
		dir, err := l.dataDir()
		if err != nil {
			return err
		}
		path = filepath.Join(dir, "containers", "storage")
	}
	eff.GraphRoot = l.expand(path)
	return nil
}

// expand replaces $UID, $HOME and $USER (and, in the current user's view, other variables) in a
// storage.conf path as containers/storage does.
func (l Lookup) expand(path string) string {
	return os.Expand(path, func(name string) string {
		switch {
		case name == "UID":
			return strconv.Itoa(l.UID)
		case name == "HOME" && l.Home != "":
			return l.Home
		case name == "USER" && l.Name != "":
			return l.Name
		}
		v, _ := l.getenv(name)
		return v
	})
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
	if env, _ := l.getenv("CONTAINERS_STORAGE_CONF"); env != "" {
		eff.Notes = append(eff.Notes, "CONTAINERS_STORAGE_CONF names "+env+": Podman reads it instead of the usual files, and no drop-ins.")
	}
	restore, err := l.asTheirEnv()
	if err != nil {
		return nil, err
	}
	defer restore()
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
		eff.DriverOptions = eff.DriverOptions || hasDriverOptions(data)
		if md.IsDefined(storesPath...) {
			eff.Notes = append(eff.Notes, listNote(item.Name, before, conf.Storage.Options.AdditionalImageStores.Values))
		}
	}
	if len(eff.Files) == 0 {
		eff.Notes = append(eff.Notes, "No storage.conf file exists: no additional image stores.")
	}
	eff.Driver = conf.Storage.Driver
	eff.Stores = slices.Clone(conf.Storage.Options.AdditionalImageStores.Values)
	eff.MountProgram = cmp.Or(conf.Storage.Options.Overlay.MountProgram, conf.Storage.Options.MountProgram)
	var fc fileConfig
	fc.Storage.GraphRoot, fc.Storage.RootlessStoragePath = conf.Storage.GraphRoot, conf.Storage.RootlessStoragePath
	return eff, eff.setGraphRoot(l, &fc, nil)
}

// listNote says what one file of Podman 6+ did to the list of stores (before: the list up to it).
func listNote(name string, before, after []string) string {
	added := after[min(len(before), len(after)):]
	switch {
	case len(after) >= len(before) && slices.Equal(after[:len(before)], before) && len(before) > 0:
		return fmt.Sprintf("%s adds %s ({append = true}).", name, listOrNone(added))
	case len(before) > 0:
		return fmt.Sprintf("%s replaces the list (%s) with %s: write its list with {append = true} to keep the others.",
			name, listOrNone(before), listOrNone(after))
	}
	return fmt.Sprintf("%s lists %s.", name, listOrNone(after))
}

// asTheirEnv points containers/storage's file search (which reads the environment) at another
// user's home for the duration of a Resolve; it returns what puts the environment back. A no-op for
// the current user's view. (The CLI resolves one view at a time: nothing runs alongside.)
func (l Lookup) asTheirEnv() (func(), error) {
	if l.Home == "" {
		return func() {}, nil
	}
	saved := map[string]*string{}
	for _, name := range []string{"CONTAINERS_STORAGE_CONF", "XDG_CONFIG_HOME", "HOME"} {
		if v, ok := os.LookupEnv(name); ok {
			saved[name] = &v
		} else {
			saved[name] = nil
		}
	}
	restore := func() {
		for name, v := range saved {
			if v == nil {
				_ = os.Unsetenv(name) // restoring what was: cannot fail for a valid name
			} else {
				_ = os.Setenv(name, *v)
			}
		}
	}
	_ = os.Unsetenv("CONTAINERS_STORAGE_CONF")
	_ = os.Unsetenv("XDG_CONFIG_HOME")
	if err := os.Setenv("HOME", l.Home); err != nil {
		restore()
		return nil, err
	}
	return restore, nil
}

// configDir is the user's containers configuration directory: $XDG_CONFIG_HOME/containers, else
// ~/.config/containers.
func (l Lookup) configDir() (string, error) {
	if l.Home != "" {
		return filepath.Join(l.Home, ".config", "containers"), nil
	}
	return userConfigDir()
}

// dataDir is the user's data directory: $XDG_DATA_HOME, else ~/.local/share.
func (l Lookup) dataDir() (string, error) {
	if l.Home != "" {
		return filepath.Join(l.Home, ".local", "share"), nil
	}
	if xdg, ok := os.LookupEnv("XDG_DATA_HOME"); ok && xdg != "" {
		return xdg, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", errors.New("cannot find the user's storage: neither XDG_DATA_HOME nor HOME is set")
	}
	return filepath.Join(home, ".local", "share"), nil
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
