// Package recipe reads the TOML file that lists what a store should hold.
//
//	store = "/srv/images"
//
//	[defaults]
//	platform = "linux/amd64"
//	tls-verify = true
//	authfile = "/etc/cargohold/auth.json"
//
//	[[image]]
//	ref = "docker.io/library/alpine:3.20"
//	names = ["site/alpine:stable"]   # extra names in the store
//	platform = "linux/arm64"         # any default may be overridden per image
//
//	[publish]                        # optional: how the store is published, store options
//	cvmfs = true                     # through the CVMFS repository's cvmfs_server (package cvmfs)
//	cvmfs-repo = "sw.example.org"    # default: the directory below /cvmfs/ holding the store
//	cvmfs-catalogs = true            # a .cvmfscatalog in each layer dir
//	before = "..."                   # or commands of one's own around the publish (not with cvmfs)
//	after = "..."
//	on-failure = "..."
//	hardlinks = "keep"               # the default; or "copy-across-dirs"
//	driver = "vfs"                   # a new store's driver: overlay (the default) or vfs
//	dedup = "hardlink"               # shared file data: auto (the default), off or hardlink
//
// Relative paths (store, authfile) are relative to the recipe file's directory; hooks run there.
//
// The store path may hold {os}, {arch}, {variant} or {platform}, one store per platform
// (platforms = [...] in [defaults] or an [[image]]); publish plans which image goes where.
package recipe

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/cargohold/cargohold/builder"
	"github.com/cargohold/cargohold/hooks"
)

// Recipe is a parsed recipe file.
type Recipe struct {
	Store    string   `toml:"store"`
	Defaults Settings `toml:"defaults"`
	Publish  Publish  `toml:"publish"`
	Images   []Image  `toml:"image"`

	// Path is the file it was loaded from ("" for Parse). Its relative paths (store, authfile) are
	// resolved against the file's directory, Dir, as other tools read paths in their configuration
	// files: a cron or systemd run's current directory is "/", and "relstore" must not become
	// "/relstore".
	Path string `toml:"-"`
	Dir  string `toml:"-"`
	// RelativeStore says that store was written as a relative path (Store is then resolved).
	RelativeStore bool `toml:"-"`
}

// Publish is the [publish] table: commands run around a publish (see package hooks; {store} and
// {repo} are replaced by the shell-quoted store path and CVMFS repository) and how the store is
// written for the filesystem it lives on.
type Publish struct {
	Before    string `toml:"before"`     // runs before the store is opened: nothing is written if it fails
	After     string `toml:"after"`      // runs after every image was published and the store closed
	OnFailure string `toml:"on-failure"` // runs when an image, the store or the after hook failed
	// CVMFS publishes the store through its CVMFS repository's cvmfs_server (package cvmfs): no
	// before, after or on-failure then, cargohold opens and ends the transactions itself.
	CVMFS     bool   `toml:"cvmfs"`
	CVMFSRepo string `toml:"cvmfs-repo"` // {repo}; default: the first directory below /cvmfs/ of the store
	// CVMFSCatalogs puts a .cvmfscatalog marker into each layer dir, so that every layer gets its
	// own small CVMFS catalog.
	CVMFSCatalogs bool `toml:"cvmfs-catalogs"`
	// Hardlinks is HardlinksKeep ("" means the same) or HardlinksCopyAcrossDirs.
	Hardlinks string `toml:"hardlinks"`
	// Driver is the format of a new store: "overlay" ("" means the same) or "vfs" (a whole tree per
	// layer, no whiteouts on disk: for vfs nodes). An existing store keeps its driver; naming another
	// is an error.
	Driver string `toml:"driver"`
	// Dedup says whether equal files of the store's layers share their data: "auto" ("" means the
	// same: reflinks where the filesystem has them), "off", or "hardlink" (layout.ParseDedup).
	Dedup string `toml:"dedup"`
}

// Values of [publish] hardlinks.
const (
	HardlinksKeep = "keep"
	// HardlinksCopyAcrossDirs writes a hard link whose target is in another directory as a copy. It
	// was meant for CVMFS, which turns out to keep no hard link at all (it makes every name a file of
	// its own, in the same directory or not): a store in CVMFS needs no setting. Kept for recipes that
	// name it.
	HardlinksCopyAcrossDirs = "copy-across-dirs"
)

// CopyHardlinksAcrossDirs parses a hardlinks setting.
func CopyHardlinksAcrossDirs(mode string) (bool, error) {
	switch mode {
	case "", HardlinksKeep:
		return false, nil
	case HardlinksCopyAcrossDirs:
		return true, nil
	}
	return false, fmt.Errorf("hardlinks = %q: want %q or %q", mode, HardlinksKeep, HardlinksCopyAcrossDirs)
}

// Settings say how to fetch an image: builder.Options (of which a recipe sets platform, tls-verify
// and authfile; the command line's flags set the others) and the platforms to publish it for. An unset
// field (zero, nil) inherits.
type Settings struct {
	builder.Options
	// Platforms publishes the image once per platform, each into its own store: the store path
	// must then name the platform ({arch}, {platform}; see StorePath).
	Platforms []string `toml:"platforms"`
}

// Image is one [[image]] entry.
type Image struct {
	Ref   string   `toml:"ref"`
	Names []string `toml:"names"`
	Settings
	// Line is the line of its [[image]] header (0 if unknown: an inline array of tables).
	Line int `toml:"-"`
	// Number is its position among the entries, from 1.
	Number int `toml:"-"`
}

// Where names the entry for messages: "[[image]] at line 12", or by number when the line is unknown.
func (i Image) Where() string {
	if i.Line > 0 {
		return fmt.Sprintf("[[image]] at line %d", i.Line)
	}
	return fmt.Sprintf("[[image]] number %d", i.Number)
}

// Over is s with the fields it leaves unset taken from base (builder.Options.Over). A platform given
// either way (platform or platforms) replaces both of base's.
func (s Settings) Over(base Settings) Settings {
	merged := Settings{Options: s.Options.Over(base.Options), Platforms: s.Platforms}
	if s.Platform == "" && len(s.Platforms) == 0 {
		merged.Platform, merged.Platforms = base.Platform, base.Platforms
	} else {
		merged.Platform = s.Platform
	}
	return merged
}

// Load reads and validates a recipe file. Unknown keys are errors (a typo must not silently
// drop an image or a setting), reported with their line.
func Load(path string) (*Recipe, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r, err := Parse(string(data))
	if err != nil {
		return nil, fmt.Errorf("recipe %s: %w", path, err)
	}
	if r.Path, err = filepath.Abs(path); err != nil {
		return nil, err
	}
	r.Dir = filepath.Dir(r.Path)
	r.resolvePaths()
	return r, nil
}

// resolvePaths makes the recipe's relative paths relative to its directory.
func (r *Recipe) resolvePaths() {
	r.RelativeStore = r.Store != "" && !filepath.IsAbs(r.Store)
	for _, p := range []*string{&r.Store, &r.Defaults.AuthFile} {
		*p = r.resolve(*p)
	}
	for i := range r.Images {
		r.Images[i].AuthFile = r.resolve(r.Images[i].AuthFile)
	}
}

func (r *Recipe) resolve(path string) string {
	if path == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(r.Dir, path)
}

// Parse parses recipe text.
func Parse(text string) (*Recipe, error) {
	var r Recipe
	md, err := toml.Decode(text, &r)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return nil, fmt.Errorf("line %d: %s", perr.Position.Line, perr.Message)
		}
		return nil, err
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		k := undecoded[0]
		return nil, fmt.Errorf("line %d: unknown key %q (known: store, [defaults] platform/platforms/tls-verify/authfile, "+
			"[[image]] ref/names/platform/platforms/tls-verify/authfile, [publish] before/after/on-failure/cvmfs/cvmfs-repo/cvmfs-catalogs/hardlinks/driver)",
			keyLine(text, k), k.String())
	}
	if err := r.Publish.validate(text); err != nil {
		return nil, err
	}
	if len(r.Images) == 0 {
		return nil, errors.New("no [[image]] entries")
	}
	lines := imageLines(text)
	for i := range r.Images {
		img := &r.Images[i]
		img.Number = i + 1
		if len(lines) == len(r.Images) {
			img.Line = lines[i]
		}
		if strings.TrimSpace(img.Ref) == "" {
			return nil, fmt.Errorf("%s has no ref", img.Where())
		}
	}
	return &r, nil
}

// validate checks the commands' placeholders and the hardlinks mode, naming the line.
func (p Publish) validate(text string) error {
	for _, h := range []struct{ key, cmd string }{{"before", p.Before}, {"after", p.After}, {"on-failure", p.OnFailure}} {
		if err := hooks.Check(h.cmd); err != nil {
			return fmt.Errorf("line %d: [publish] %s: %w", keyLine(text, toml.Key{"publish", h.key}), h.key, err)
		}
	}
	if _, err := CopyHardlinksAcrossDirs(p.Hardlinks); err != nil {
		return fmt.Errorf("line %d: [publish] %w", keyLine(text, toml.Key{"publish", "hardlinks"}), err)
	}
	return nil
}

var (
	imageHeader = regexp.MustCompile(`^\s*\[\[\s*image\s*\]\]`)
	tableHeader = regexp.MustCompile(`^\s*\[\[?\s*([^\]]+?)\s*\]\]?`)
	keyAssign   = regexp.MustCompile(`^\s*"?([A-Za-z0-9_.-]+)"?\s*=`)
)

// imageLines lists the lines of the [[image]] headers, in order. As for keyLine, the text is
// scanned: the TOML library does not export positions.
func imageLines(text string) []int {
	var lines []int
	for i, line := range strings.Split(text, "\n") {
		if imageHeader.MatchString(line) {
			lines = append(lines, i+1)
		}
	}
	return lines
}

// keyLine finds the line of a key the decoder did not use. The TOML library knows key positions
// but does not export them, so the text is scanned: table headers set the current table, and the
// key's last part is looked for under its table (or as a table header itself).
func keyLine(text string, key toml.Key) int {
	table := strings.Join(key[:len(key)-1], ".")
	name := key[len(key)-1]
	current := ""
	for i, line := range strings.Split(text, "\n") {
		if m := tableHeader.FindStringSubmatch(line); m != nil {
			current = m[1]
			if current == key.String() {
				return i + 1
			}
			continue
		}
		if m := keyAssign.FindStringSubmatch(line); m != nil && current == table && m[1] == name {
			return i + 1
		}
	}
	return 0
}
