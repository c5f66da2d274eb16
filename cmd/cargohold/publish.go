package main

import (
	"context"
	"errors"

	"github.com/cargohold/cargohold/builder"
	"github.com/cargohold/cargohold/publish"
	"github.com/cargohold/cargohold/recipe"
	"github.com/urfave/cli/v2"
)

func newPublishCommand() *cli.Command {
	return &cli.Command{
		Name:      "publish",
		Usage:     "fetch images and publish them into the store",
		ArgsUsage: "[IMAGE...]   (docker://registry/name:tag, name:tag, name@sha256:..., oci:DIR:tag, ...)",
		Description: "Each image is fetched, verified and unpacked, then made visible in one step. An image that\n" +
			"fails is reported and leaves the store as it was; the others are still published.\n" +
			"Flags given on the command line override the recipe's [defaults]; an [[image]]'s own settings win.\n" +
			"Flags may come before or after the images.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "store", Usage: "store directory (default: the recipe's store)"},
			&cli.StringFlag{Name: "recipe", Usage: "TOML `FILE` listing the images (see README)"},
			&cli.StringSliceFlag{Name: "name", Usage: "extra `NAME` for the image (only with one IMAGE)"},
			&cli.StringFlag{Name: "platform", Usage: "`OS/ARCH[/VARIANT]` to pick from multi-platform images (default: this host's)"},
			&cli.BoolFlag{Name: "tls-verify", Value: true, Usage: "verify registry TLS certificates and require HTTPS (--tls-verify=false for plain-http test registries)"},
			&cli.StringFlag{Name: "authfile", EnvVars: []string{"REGISTRY_AUTH_FILE"}, Usage: "registry credentials `FILE` (as written by podman login); must exist"},
			&cli.StringFlag{Name: "registries-conf", Usage: "registries.conf `FILE` for short names and mirrors (default: the system's)"},
			&cli.StringFlag{Name: "policy", Usage: "trust policy `FILE` (default: /etc/containers/policy.json)"},
			&cli.BoolFlag{Name: "insecure-policy", Usage: "accept every image without consulting a trust policy"},
			&cli.IntFlag{Name: "jobs", Value: 0, Usage: "layers fetched and unpacked at once, by all images together (default 4)"},
			&cli.IntFlag{Name: "image-jobs", Value: 0, Usage: "images published at once: registry requests overlap, results are printed in order (default 64)"},
			&cli.IntFlag{Name: "retry-times", Value: 3, Usage: "retry a registry request that failed for a transient reason (network, 429, 5xx) `N` times, waiting 1s, 2s, 4s, ..."},
			&cli.Int64Flag{Name: "max-layer-size", Usage: "refuse layers larger than `BYTES` uncompressed (0: no limit)"},
			&cli.BoolFlag{Name: "strict", Usage: "fail an image that would only get a warning"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only errors"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON report of every image at the end (see README)"},
			&cli.StringFlag{Name: "register", Usage: "add the store to this storage.conf `FILE` (as conf patch does) after publishing"},
			&cli.BoolFlag{Name: "prune", Usage: "with --recipe: remove the names the recipe no longer lists (their layers go at a later gc)"},
			noWaitFlag(),
		}, publishHookFlags()...),
		Action: func(c *cli.Context) error {
			opts, err := publishOptionsOf(c)
			if err != nil {
				return usageError(err)
			}
			return runPublish(c.Context, opts)
		},
	}
}

// publishOptions is everything a publish run was asked for.
type publishOptions struct {
	out       output
	input     publish.Input
	jobs      int
	imageJobs int
	quiet     bool
	json      bool
	register  string // storage.conf to register the store in
	noWait    bool
}

func publishOptionsOf(c *cli.Context) (publishOptions, error) {
	in := publish.Input{
		Store: c.String("store"), Refs: c.Args().Slice(), Names: c.StringSlice("name"), Prune: c.Bool("prune"),
		Settings: recipe.Settings{Platform: c.String("platform"), AuthFile: c.String("authfile")},
		Options: builder.Options{RegistriesConf: c.String("registries-conf"), PolicyPath: c.String("policy"),
			InsecurePolicy: c.Bool("insecure-policy"), MaxLayerSize: c.Int64("max-layer-size"),
			RetryTimes: c.Int("retry-times"), Strict: c.Bool("strict")},
		Overrides: hookOverrides(c),
	}
	if c.IsSet("tls-verify") {
		v := c.Bool("tls-verify")
		in.Settings.TLSVerify = &v
	}
	if path := c.String("recipe"); path != "" {
		r, err := recipe.Load(path)
		if err != nil {
			return publishOptions{}, err
		}
		in.Recipe = r
	}
	return publishOptions{out: outputOf(c), input: in, jobs: c.Int("jobs"), imageJobs: c.Int("image-jobs"), quiet: c.Bool("quiet"),
		json: c.Bool("json"), register: c.String("register"), noWait: c.Bool("no-wait")}, nil
}

// runPublish publishes into each store of the plan: one, or one per platform when the store path
// is a template ({arch}, {platform}). Everything is checked before the first store's hooks run. A
// failure in one store does not stop the others; the first error decides the exit status. A
// signal stops the run after cleaning up (see interruptible).
func runPublish(ctx context.Context, opts publishOptions) error {
	plan, err := publish.New(opts.input)
	if err != nil {
		return usageError(err)
	}
	ctx, stop := interruptible(ctx)
	defer stop()
	var first error
	for i, s := range plan.Stores {
		err := publishStore(ctx, opts, plan, s, len(plan.Stores) > 1)
		var interrupted *interruptedError
		if errors.As(err, &interrupted) {
			return interrupted.notPublished(plan.Stores[i+1:])
		}
		if err != nil && first == nil {
			first = err
		}
	}
	return first
}
