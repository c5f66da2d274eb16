package storageconf

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/cargohold/cargohold/layout/driver"
)

// OriginalSuffix names the copy of a storage.conf as it was before conf user first changed it
// (FILE.before-cargohold): conf user --remove puts it back once the file is otherwise as then.
const OriginalSuffix = ".before-cargohold"

// ErrUserStorage is wrapped by conf user's refusal to write what the user's own Podman storage
// cannot work with: nothing was written.
var ErrUserStorage = errors.New("nothing was written")

// UserOptions tune AddUserStore and RemoveUserStore.
type UserOptions struct {
	Driver driver.Driver // the store's driver ("": overlay)
	// MountProgram goes under [storage.options.overlay] of a new overlay file ("": none). nil: the
	// one the user's storage was made with; for new storage fuse-overlayfs, if installed.
	MountProgram *string
	Backup       bool
	// For root writing another user's file: their home and IDs. Below Home no symlink is
	// followed, and what cargohold creates belongs to Owner.
	Home  string
	Owner *Owner
	// User is the user whose Podman reads the file: their own storage decides what may be written.
	// nil for a file many users read (conf user --file as root): there is no one storage to look at.
	User *Lookup
}

// UserFile is the storage.conf of the user with this home directory, as their Podman
// finds it without CONTAINERS_STORAGE_CONF and XDG_CONFIG_HOME.
func UserFile(home string) string {
	return filepath.Join(home, ".config", "containers", "storage.conf")
}

// AddUserStore adds store to a rootless user's storage.conf, keeping the user's Podman working: it
// refuses (ErrUserStorage) when the user's storage or file has another driver than the store, or
// names none while the storage does not exist yet. A missing file is created with the store's
// driver, the store and the mount program the user's overlay storage was made with, leaving
// graphroot and runroot to Podman's per-user defaults. The first change of an existing file keeps
// its content beside it (OriginalSuffix) for RemoveUserStore.
func AddUserStore(file, store string, o UserOptions) (Result, error) {
	d := driverOrDefault(o.Driver)
	opts := o.fileOptions(file)
	existing, err := readConfig(file, opts)
	if err != nil {
		return Result{}, err
	}
	storage, err := o.storage(existing)
	if err != nil {
		return Result{}, err
	}
	plan, err := planUserFile(file, existing, storage, d, o)
	if err != nil {
		return Result{}, err
	}
	opts.Driver, opts.MakeDirs, opts.keepOriginal = d, true, true
	opts.template = userTemplate(string(d), plan.mountProgram)
	res, err := AddStore(file, store, opts)
	if res.Created {
		res.Notes = append(res.Notes, plan.notes...)
	}
	return res, err
}

// RemoveUserStore takes store out of a user's storage.conf and, when nothing else changed since
// conf user first wrote it, restores it: the original kept beside it, or no file at all if conf
// user created it.
func RemoveUserStore(file, store string, o UserOptions) (Result, error) {
	opts := o.fileOptions(file)
	t, err := openTarget(file, false, opts.Beneath, opts.Owner)
	if errors.Is(err, os.ErrNotExist) {
		return Result{File: file}, nil // nothing to remove from
	} else if err != nil {
		return Result{}, err
	}
	defer t.close()
	res := Result{File: t.path}
	was, err := t.read()
	if err != nil || was == nil {
		return res, err
	}
	out, changed, err := RemoveFromText(t.path, was.data, store)
	if err != nil || !changed {
		res.Stores, _ = StoresInText(t.path, was.data)
		return res, err
	}
	res.Changed = true
	original, err := t.readName(t.base + OriginalSuffix)
	switch {
	case err != nil:
		return res, err
	case original != nil && sameSettings(out, original.data):
		out, res.Restored = original.data, t.path+OriginalSuffix
	case original != nil:
		res.Notes = append(res.Notes, t.path+" was changed since cargohold first added a store to it: only the store was "+
			"taken out; "+t.path+OriginalSuffix+" holds the file as it was before")
	case createdByConfUser(out):
		res.Deleted = true
	}
	if res.Stores, err = StoresInText(t.path, out); err != nil {
		return res, err
	}
	if err := opts.keep(t, was, &res); err != nil {
		return res, err
	}
	if res.Deleted {
		return res, t.remove(t.base, was)
	}
	if err := t.write(t.base, out, was, was); err != nil {
		return res, err
	}
	if res.Restored != "" {
		return res, t.remove(t.base+OriginalSuffix, nil)
	}
	return res, nil
}

// fileOptions are the Options for writing file: confined to the user's home when root writes there.
func (o UserOptions) fileOptions(file string) Options {
	opts := Options{Backup: o.Backup, Owner: o.Owner}
	if o.Owner != nil && o.Home != "" && within(o.Home, file) {
		opts.Beneath = o.Home
	}
	return opts
}

// readConfig decodes file as it is now (nil if it does not exist), reading it as a change would.
func readConfig(file string, opts Options) (*fileConfig, error) {
	t, err := openTarget(file, false, opts.Beneath, opts.Owner)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	defer t.close()
	ex, err := t.read()
	if err != nil || ex == nil {
		return nil, err
	}
	return decodeText(t.path, ex.data)
}

// storage looks at the Podman storage of the user who reads the file (with file's content, which
// may move it): zero for a file shared by many users.
func (o UserOptions) storage(file *fileConfig) (driver.PodmanStorage, error) {
	if o.User == nil {
		return driver.PodmanStorage{}, nil
	}
	system, err := systemConfig(*o.User)
	if err != nil {
		return driver.PodmanStorage{}, err
	}
	var eff Effective
	if err := eff.setGraphRoot(*o.User, file, system); err != nil {
		return driver.PodmanStorage{}, err
	}
	return driver.ReadPodmanStorage(eff.GraphRoot)
}

// userPlan is what conf user writes into a new file beyond the store.
type userPlan struct {
	mountProgram string   // overlay: the mount program ("" none)
	notes        []string // decisions the admin should hear about
}

// planUserFile decides whether store (of driver) may be added to the user's file (existing: its
// settings, nil if it does not exist) given their Podman storage, and what a new file holds.
// Podman keeps the driver its storage was made with whatever storage.conf says, and then refuses the
// options written for another driver: every podman command of the user would fail.
func planUserFile(file string, existing *fileConfig, storage driver.PodmanStorage, d driver.Driver, o UserOptions) (userPlan, error) {
	who := "this user"
	if o.User != nil && o.User.Name != "" {
		who = o.User.Name
	}
	if err := storageAllows(storage, string(d), who); err != nil {
		return userPlan{}, err
	}
	if existing != nil {
		return userPlan{}, fileAllows(file, existing.Storage.Driver, storage, string(d), who)
	}
	if d != driver.Overlay {
		return userPlan{}, nil
	}
	switch {
	case o.MountProgram != nil:
		return userPlan{mountProgram: *o.MountProgram}, nil
	case storage.MountProgram == "false":
		return userPlan{notes: []string{who + "'s overlay storage " + storage.Dir + " was made with the kernel's overlay: " +
			"no mount_program is written, as before (--mount-program /usr/bin/fuse-overlayfs switches it to fuse-overlayfs)"}}, nil
	}
	if p, err := exec.LookPath("fuse-overlayfs"); err == nil {
		return userPlan{mountProgram: p}, nil
	}
	return userPlan{}, nil
}

// storageAllows refuses a store of driver for a user whose Podman storage has another driver (or
// one that cannot be told).
func storageAllows(storage driver.PodmanStorage, storeDriver, who string) error {
	recorded := storage.Driver()
	howToTell := "As " + who + ", podman info --format '{{.Store.GraphDriverName}}' says which; if it is " + storeDriver +
		", add the store with cargohold conf patch --file on " + who + "'s storage.conf, else reset the storage first (podman system reset)"
	switch {
	case recorded != "" && !sameDriver(recorded, storeDriver):
		alternative := ""
		if _, err := driver.Parse(recorded); err == nil {
			alternative = ", or register " + aStore(recorded) + " for " + who + " (cargohold publish --driver " + recorded + ")"
		}
		return userStorageError("%s's Podman storage %s was made with the %s driver, which Podman keeps whatever storage.conf says: "+
			"%s configuration would make every podman command of %s fail (%s), and the %s driver cannot read %s. "+
			"Reset %s's storage first (as %s: podman system reset, which removes their images, containers and volumes) "+
			"and run this again%s",
			who, storage.Dir, recorded, aOrAn(storeDriver), who, optionsError(recorded, storeDriver),
			recorded, aStore(storeDriver), who, who, alternative)
	case len(storage.Drivers) > 1:
		return userStorageError("%s's Podman storage %s holds records of several drivers (%s): cargohold cannot tell which one "+
			"Podman recorded. %s", who, storage.Dir, strings.Join(storage.Drivers, ", "), howToTell)
	case recorded == "" && storage.Database != "":
		return userStorageError("%s's Podman storage %s has a database (%s) but no records of any driver: cargohold cannot "+
			"tell which driver Podman recorded. %s", who, storage.Dir, storage.Database, howToTell)
	}
	return nil
}

// fileAllows refuses to add a store of driver to a file that names another driver, or none while
// the user's storage does not exist yet (Podman would pick one itself, and keep it).
func fileAllows(file, fileDriver string, storage driver.PodmanStorage, storeDriver, who string) error {
	switch {
	case fileDriver != "" && !sameDriver(fileDriver, storeDriver):
		return userStorageError("%s sets driver = %q: Podman with it cannot read %s. Change the driver there "+
			"(for a user whose Podman storage exists, only after podman system reset as that user), or register %s",
			file, fileDriver, aStore(storeDriver), aStore(fileDriver))
	case fileDriver == "" && storage.Fresh():
		return userStorageError("%s sets no driver and %s has no Podman storage yet: Podman would pick a driver "+
			"itself on its first run (vfs on some machines), keep it, and not read %s. Add driver = %q "+
			"under [storage] in %s and run this again", file, who, aStore(storeDriver), storeDriver, file)
	}
	return nil
}

// aStore is "an overlay store", "a vfs store".
func aStore(driverName string) string { return aOrAn(driverName) + " store" }

func aOrAn(word string) string {
	if word != "" && strings.ContainsRune("aeiou", rune(word[0])) {
		return "an " + word
	}
	return "a " + word
}

func userStorageError(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrUserStorage)
}

// userHeader heads a per-user storage.conf that conf user creates.
const userHeader = `# Podman storage configuration for this user (containers-storage.conf(5)), created by
# cargohold conf user. Rootless Podman up to 5.x reads only this file for its stores: the
# system file's additionalimagestores do not apply to rootless users. graphroot and runroot
# are left to Podman's per-user defaults. cargohold conf user --remove deletes this file
# again once it lists no store and nothing else in it was changed.
`

// userTemplate is a new per-user storage.conf. graphroot and runroot stay unset on purpose: Podman
// then keeps the user's defaults, which its database has recorded (other values make it refuse to
// start until `podman system reset`). createdByConfUser recognises it again.
func userTemplate(driverName, mountProgram string) []byte {
	return []byte(userHeader + userBody(driverName, mountProgram))
}

func userBody(driverName, mountProgram string) string {
	var b strings.Builder
	b.WriteString("[storage]\ndriver = " + quote(driverName) + "\n\n")
	b.WriteString("[storage.options]\n# Read-only image stores (cargohold publish).\nadditionalimagestores = [\n]\n")
	if driverName == string(driver.Overlay) && mountProgram != "" {
		b.WriteString("\n[storage.options.overlay]\n")
		b.WriteString("# Rootless overlay mounts of a root-published store go through fuse-overlayfs.\n")
		b.WriteString("mount_program = " + quote(mountProgram) + "\n")
	}
	return b.String()
}

// earlierUserHeader heads the files earlier cargohold versions created, which named the graph root:
// conf user --remove recognises them too (and so repairs a user those versions broke).
var earlierUserHeader = regexp.MustCompile(`^# Podman storage configuration for this user \(containers-storage.conf\(5\)\), created by
# cargohold conf user. Rootless Podman up to 5.x reads only this file for its stores: the
# system file's additionalimagestores do not apply to rootless users.
# graphroot and runroot are left to Podman's per-user defaults
# \(graphroot [^\n]*, runroot \$XDG_RUNTIME_DIR/containers\).
`)

// createdByConfUser reports whether data is exactly a file conf user created, listing no store:
// deleting it restores what was there before (nothing).
func createdByConfUser(data []byte) bool {
	fc, err := decodeText("", data)
	if err != nil || len(fc.Storage.Options.AdditionalImageStores) > 0 {
		return false
	}
	body := userBody(fc.Storage.Driver, fc.Storage.Options.Overlay.MountProgram)
	if bytes.Equal(data, []byte(userHeader+body)) {
		return true
	}
	header := earlierUserHeader.Find(data)
	return header != nil && bytes.Equal(data[len(header):], []byte(body))
}

// sameSettings reports whether two storage.conf texts mean the same to Podman: comments, layout and
// empty lists or tables aside (removing the last store leaves "additionalimagestores = []").
func sameSettings(a, b []byte) bool {
	var da, db map[string]any
	if _, err := toml.Decode(string(a), &da); err != nil {
		return false
	}
	if _, err := toml.Decode(string(b), &db); err != nil {
		return false
	}
	return reflect.DeepEqual(withoutEmpty(da), withoutEmpty(db))
}

// withoutEmpty drops empty lists and tables from a decoded TOML table, recursively.
func withoutEmpty(m map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		switch v := v.(type) {
		case map[string]any:
			if sub := withoutEmpty(v); len(sub) > 0 {
				out[k] = sub
			}
		case []any:
			if len(v) > 0 {
				out[k] = v
			}
		default:
			out[k] = v
		}
	}
	return out
}

func within(dir, file string) bool {
	rel, err := filepath.Rel(dir, file)
	return err == nil && rel != "." && !strings.HasPrefix(rel, "..")
}
