package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/cargohold/cargohold/builder"
	"github.com/cargohold/cargohold/layout"
	"github.com/cargohold/cargohold/recipe"
	"github.com/cargohold/cargohold/storageconf"
	"github.com/docker/go-units"
	"github.com/urfave/cli/v2"
)

func publishCommand() *cli.Command {
	return &cli.Command{
		Name:      "publish",
		Usage:     "fetch images and publish them into the store",
		ArgsUsage: "[IMAGE...]   (docker://registry/name:tag, name:tag, name@sha256:..., oci:DIR:tag, ...)",
		Description: "Each image is fetched, verified and unpacked, then made visible in one step. An image that\n" +
			"fails is reported and leaves the store as it was; the others are still published.\n" +
			"Flags given on the command line override the recipe's [defaults]; an [[image]]'s own settings win.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "store", Usage: "store directory (default: the recipe's store)"},
			&cli.StringFlag{Name: "recipe", Usage: "TOML `FILE` listing the images (see README)"},
			&cli.StringSliceFlag{Name: "name", Usage: "extra `NAME` for the image (only with one IMAGE)"},
			&cli.StringFlag{Name: "platform", Usage: "`OS/ARCH[/VARIANT]` to pick from multi-platform images (default: this host's)"},
			&cli.BoolFlag{Name: "tls-verify", Value: true, Usage: "verify registry TLS certificates and require HTTPS (--tls-verify=false for plain-http test registries)"},
			&cli.StringFlag{Name: "authfile", EnvVars: []string{"REGISTRY_AUTH_FILE"}, Usage: "registry credentials `FILE` (as written by podman login)"},
			&cli.StringFlag{Name: "registries-conf", Usage: "registries.conf `FILE` for short names and mirrors (default: the system's)"},
			&cli.StringFlag{Name: "policy", Usage: "trust policy `FILE` (default: /etc/containers/policy.json)"},
			&cli.BoolFlag{Name: "insecure-policy", Usage: "accept every image without consulting a trust policy"},
			&cli.IntFlag{Name: "jobs", Value: 0, Usage: "layers fetched and unpacked at once (default 4)"},
			&cli.Int64Flag{Name: "max-layer-size", Usage: "refuse layers larger than `BYTES` uncompressed (0: no limit)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only errors"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON report of every image at the end (see README)"},
			&cli.StringFlag{Name: "register", Usage: "add the store to this storage.conf `FILE` (as conf patch does) after publishing"},
			&cli.BoolFlag{Name: "prune", Usage: "with --recipe: remove the names the recipe no longer lists (their layers go at a later gc)"},
			noWaitFlag(),
		}, publishHookFlags()...),
		Action: runPublish,
	}
}

// runPublish publishes into each store the run names: one, or one per platform when the store path
// is a template ({arch}, {platform}). A failure in one store does not stop the others; the first
// error decides the exit status.
func runPublish(c *cli.Context) error {
	groups, settings, err := publishRequests(c)
	if err != nil {
		return cli.Exit(err, exitUsage)
	}
	var first error
	for _, g := range groups {
		if err := publishStore(c, g.dir, g.requests, settings); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// publishStore publishes requests into the store at storeDir; settings are the recipe's [publish].
func publishStore(c *cli.Context, storeDir string, requests []builder.Request, settings recipe.Publish) (err error) {
	// The before hook (a CVMFS transaction) runs before anything in the store is written; after or
	// on-failure runs once the store is closed (deferred calls run last first).
	run, err := startPublish(c, storeDir, settings)
	if err != nil {
		return err
	}
	defer func() { err = run.finish(err) }()
	store, err := layout.OpenWithOptions(storeDir, withLock(c, storeDir, run.storeOpts))
	if err != nil {
		return cli.Exit(fmt.Errorf("opening store %s: %w", storeDir, err), exitStore)
	}
	defer store.Close()
	reportCleaned(store)

	p := builder.Publisher{Store: store, Options: cliOptions(c, builder.Options{}), Jobs: c.Int("jobs"),
		CopyHardlinksAcrossDirs: run.copyLinks}
	failed := 0
	report := publishReport{Store: store.Dir(), Driver: string(store.Driver()), Images: []imageReport{}}
	for _, req := range requests {
		var endBars func()
		p.Progress, endBars = layerProgress(c) // per-layer bars on a terminal
		res := p.Publish(c.Context, req)
		endBars()
		report.add(res)
		if res.Err != nil {
			failed++
			fmt.Fprintln(os.Stderr, "error:", res.Err)
			continue
		}
		if !c.Bool("quiet") && !c.Bool("json") {
			fmt.Printf("%-9s %s  %s  %d layers, %s fetched in %.1fs\n", res.Action, strings.Join(res.Names, ","),
				shortID(res.ImageID), res.LayersFetched, units.BytesSize(float64(res.BytesFetched)), res.Duration.Seconds())
		}
	}
	if c.String("recipe") != "" {
		if err := syncExtras(c, store, &report); err != nil {
			return err
		}
	}
	if c.Bool("json") {
		if err := printJSON(report); err != nil {
			return err
		}
	}
	// The store is consistent whatever failed, so it is registered either way.
	if file := c.String("register"); file != "" {
		changed, err := storageconf.Register(file, store.Dir(), string(store.Driver()))
		if err != nil {
			return cli.Exit(fmt.Errorf("registering the store in %s: %w", file, err), exitUsage)
		}
		if changed && !c.Bool("quiet") && !c.Bool("json") {
			fmt.Printf("registered %s in %s\n", store.Dir(), file)
		}
	}
	if failed > 0 {
		return cli.Exit(fmt.Sprintf("%d of %d images failed; the store holds the others", failed, len(requests)), exitImageFailed)
	}
	return nil
}

// syncExtras reports the names a recipe no longer lists, and with --prune removes them. It prunes
// only after a run in which every image succeeded: an image that failed (a registry down) must not
// lose its published version.
func syncExtras(c *cli.Context, store *layout.Store, report *publishReport) error {
	var keep []string
	for _, img := range report.Images {
		keep = append(keep, img.Names...)
	}
	extras := store.NamesExcept(keep)
	switch {
	case len(extras) == 0:
		return nil
	case !c.Bool("prune"):
		report.Extra = extras
		if !c.Bool("json") {
			fmt.Printf("extra     %s  (not in the recipe; --prune removes)\n", strings.Join(extras, ","))
		}
		return nil
	case report.Failed > 0:
		report.Extra = extras
		fmt.Fprintf(os.Stderr, "not pruning %s: %d images of the recipe failed\n", strings.Join(extras, ","), report.Failed)
		return nil
	}
	for _, name := range extras {
		r, err := store.Remove(name, false)
		if err != nil {
			return cli.Exit(fmt.Errorf("pruning %s: %w", name, err), exitStore)
		}
		report.Pruned = append(report.Pruned, r)
		if !c.Bool("quiet") && !c.Bool("json") {
			fmt.Printf("pruned    %s  %s\n", name, shortID(r.ImageID))
		}
	}
	return nil
}

// publishReport is what --json prints: the schema is documented in the README.
type publishReport struct {
	Store  string           `json:"store"`
	Driver string           `json:"driver"` // overlay or vfs
	Images []imageReport    `json:"images"`
	Failed int              `json:"failed"`
	Extra  []string         `json:"extra,omitempty"`  // names in the store the recipe does not list (not pruned)
	Pruned []layout.Removal `json:"pruned,omitempty"` // what --prune removed
}

type imageReport struct {
	Reference     string   `json:"reference"`
	Names         []string `json:"names"`
	ID            string   `json:"id,omitempty"`
	Digest        string   `json:"digest,omitempty"`
	Action        string   `json:"action"`
	LayersFetched int      `json:"layers_fetched"`
	BytesFetched  int64    `json:"bytes_fetched"`
	Seconds       float64  `json:"seconds"`
	Error         string   `json:"error,omitempty"`
}

func (r *publishReport) add(res builder.Result) {
	ir := imageReport{Reference: res.Ref, Names: res.Names, ID: res.ImageID, Digest: res.ManifestDigest.String(),
		Action: string(res.Action), LayersFetched: res.LayersFetched, BytesFetched: res.BytesFetched,
		Seconds: res.Duration.Seconds()}
	if ir.Names == nil {
		ir.Names = []string{}
	}
	if res.Err != nil {
		ir.Error = res.Err.Error()
		r.Failed++
	}
	r.Images = append(r.Images, ir)
}

// storeGroup is the images of a run that go into one store.
type storeGroup struct {
	dir      string
	requests []builder.Request
}

// publishRequests gathers the stores and the images from the recipe and the command line, and the
// recipe's [publish] settings. An image
// listed for several platforms becomes one request per platform, each into the store its platform
// names in the store path template (a name points to one image in a store).
func publishRequests(c *cli.Context) ([]storeGroup, recipe.Publish, error) {
	template := c.String("store")
	type target struct {
		req      builder.Request
		platform string
	}
	var targets []target
	var settings recipe.Publish
	if path := c.String("recipe"); path != "" {
		r, err := recipe.Load(path)
		if err != nil {
			return nil, settings, err
		}
		if template == "" {
			template = r.Store
		}
		settings = r.Publish
		defaultSettings := r.Defaults
		if c.IsSet("platform") { // the flag overrides [defaults], as every flag does
			defaultSettings.Platform, defaultSettings.Platforms = c.String("platform"), nil
		}
		defaults := cliOptions(c, settingsOptions(r.Defaults, builder.Options{}))
		for _, img := range r.Images {
			for _, platform := range img.PlatformList(defaultSettings) {
				opts := settingsOptions(img.Settings, defaults)
				opts.Platform = platform
				targets = append(targets, target{builder.Request{Ref: img.Ref, Names: img.Names, Options: &opts}, platform})
			}
		}
	}
	for _, ref := range c.Args().Slice() {
		targets = append(targets, target{builder.Request{Ref: ref, Names: c.StringSlice("name")}, c.String("platform")})
	}
	switch {
	case template == "":
		return nil, settings, fmt.Errorf("no store: give --store DIR or store = \"DIR\" in the recipe")
	case len(targets) == 0:
		return nil, settings, fmt.Errorf("nothing to publish: give IMAGE arguments or --recipe FILE")
	case c.Bool("prune") && c.String("recipe") == "":
		return nil, settings, fmt.Errorf("--prune needs --recipe: it removes what the recipe no longer lists")
	case len(c.StringSlice("name")) > 0 && c.Args().Len() != 1:
		return nil, settings, fmt.Errorf("--name applies to exactly one IMAGE argument, got %d", c.Args().Len())
	}

	var groups []storeGroup
	platformsOf := map[string]map[string]string{} // store → ref → platform, to catch two platforms in one store
	for _, t := range targets {
		dir, err := recipe.StorePath(template, t.platform)
		if err != nil {
			return nil, settings, err
		}
		if platformsOf[dir] == nil {
			platformsOf[dir] = map[string]string{}
			groups = append(groups, storeGroup{dir: dir})
		}
		if other, ok := platformsOf[dir][t.req.Ref]; ok && other != t.platform {
			return nil, settings, fmt.Errorf("%s is listed for platforms %s and %s, which would share store %s: put {arch} or {platform} into the store path (one store per platform)",
				t.req.Ref, other, t.platform, dir)
		}
		platformsOf[dir][t.req.Ref] = t.platform
		for i := range groups {
			if groups[i].dir == dir {
				groups[i].requests = append(groups[i].requests, t.req)
			}
		}
	}
	return groups, settings, nil
}

// cliOptions overlays the flags the user gave on base.
func cliOptions(c *cli.Context, base builder.Options) builder.Options {
	o := base
	if c.IsSet("platform") {
		o.Platform = c.String("platform")
	}
	if c.IsSet("tls-verify") {
		v := c.Bool("tls-verify")
		o.TLSVerify = &v
	}
	if c.String("authfile") != "" {
		o.AuthFile = c.String("authfile")
	}
	o.RegistriesConf = c.String("registries-conf")
	o.PolicyPath = c.String("policy")
	o.InsecurePolicy = c.Bool("insecure-policy")
	o.MaxLayerSize = c.Int64("max-layer-size")
	return o
}

// settingsOptions overlays a recipe's settings on base.
func settingsOptions(s recipe.Settings, base builder.Options) builder.Options {
	o := base
	if s.Platform != "" {
		o.Platform = s.Platform
	}
	if s.TLSVerify != nil {
		o.TLSVerify = s.TLSVerify
	}
	if s.AuthFile != "" {
		o.AuthFile = s.AuthFile
	}
	return o
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
