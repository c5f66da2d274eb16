package main

import (
	"context"

	"github.com/cargohold/cargohold/builder"
	"github.com/cargohold/cargohold/publish"
	"github.com/urfave/cli/v2"
)

// publishOptions is everything a publish run was asked for: the flags, bound to its fields, and the
// IMAGE arguments (input.Refs).
type publishOptions struct {
	out    output
	input  publish.Input
	recipe string // --recipe FILE, loaded into input.Recipe
	quiet  bool
	json   bool
}

func newPublishCommand() *cli.Command {
	o := &publishOptions{}
	return &cli.Command{
		Name:      "publish",
		Usage:     "fetch images and publish them into the store",
		ArgsUsage: "[IMAGE...]   (docker://registry/name:tag, name:tag, name@sha256:..., oci:DIR:tag, ...)",
		Description: "Each image is fetched, verified and unpacked, then made visible in one step. An image that\n" +
			"fails is reported and leaves the store as it was; the others are still published.\n" +
			"Flags given on the command line override the recipe's [defaults]; an [[image]]'s own settings win.\n" +
			"Flags may come before or after the images.",
		Flags: publishFlags(o),
		Action: func(c *cli.Context) error {
			o.out, o.input.Refs = outputOf(c), c.Args().Slice()
			return runPublish(c.Context, *o)
		},
	}
}

// publishFlags are publish's flags, bound to o's fields.
func publishFlags(o *publishOptions) []cli.Flag {
	flags := []cli.Flag{
		storeFlag(&o.input.Store, false),
		&cli.StringFlag{Name: "recipe", Usage: "TOML `FILE` listing the images (see README)", Destination: &o.recipe},
		&cli.StringSliceFlag{Name: "name", Usage: "extra `NAME` for the image (only with one IMAGE)",
			Action: func(_ *cli.Context, names []string) error { o.input.Names = names; return nil }},
	}
	flags = append(flags, fetchFlags(&o.input)...)
	flags = append(flags,
		quietFlag(&o.quiet, "print nothing on success: only warnings about published images and errors"),
		&cli.StringFlag{Name: "register", Usage: "add the store to this storage.conf `FILE` (as conf patch does) after publishing", Destination: &o.input.Register},
		&cli.BoolFlag{Name: "prune", Usage: "with --recipe: remove the names the recipe no longer lists (their layers go at a later gc)", Destination: &o.input.Prune},
		noWaitFlag(&o.input.NoWait),
	)
	flags = append(flags, formatFlags(&o.json)...)
	return append(flags, publishHookFlags(&o.input.Overrides)...)
}

// fetchFlags are the flags that say how to fetch each image, bound to in's fields.
func fetchFlags(in *publish.Input) []cli.Flag {
	s := &in.Settings
	return []cli.Flag{
		&cli.StringFlag{Name: "platform", Usage: "`OS/ARCH[/VARIANT]` to pick from multi-platform images (default: this host's)", Destination: &s.Platform},
		&cli.BoolFlag{Name: "tls-verify", Value: true, Usage: "verify registry TLS certificates and require HTTPS (--tls-verify=false for plain-http test registries)", Action: setPtr(&s.TLSVerify)},
		&cli.StringFlag{Name: "authfile", Usage: "registry credentials `FILE` (as written by podman login); must exist " +
			"(default: the recipe's, else $REGISTRY_AUTH_FILE, else podman login's)", Destination: &s.AuthFile},
		&cli.StringFlag{Name: "creds", Usage: "`USER:PASSWORD` for every registry that asks (as skopeo's; wins over auth files; shows in ps: prefer --authfile)", Destination: &s.Creds},
		&cli.StringFlag{Name: "cert-dir", Usage: "`DIR` of CA certificates (*.crt) and client certificates (*.cert, *.key) for the registries (default: /etc/containers/certs.d/HOST/)", Destination: &s.CertDir},
		&cli.StringFlag{Name: "registries-conf", Usage: "registries.conf `FILE` for short names and mirrors (default: the system's)", Destination: &s.RegistriesConf},
		&cli.StringFlag{Name: "policy", Usage: "trust policy `FILE` (default: /etc/containers/policy.json)", Destination: &s.PolicyPath},
		&cli.BoolFlag{Name: "insecure-policy", Usage: "accept every image without consulting a trust policy", Destination: &s.InsecurePolicy},
		&cli.IntFlag{Name: "jobs", Value: builder.DefaultJobs, Usage: "layers fetched and unpacked at once, by all images together (a layer under 16 MiB takes an eighth of one)", Destination: &in.Jobs},
		&cli.IntFlag{Name: "image-jobs", Value: builder.DefaultImageJobs, Usage: "images published at once: registry requests overlap, results are printed in order", Destination: &in.ImageJobs},
		&cli.IntFlag{Name: "retry-times", Value: 3, Usage: "retry a registry request that failed for a transient reason (network, 429, 5xx) `N` times, waiting 1s, 2s, 4s, ...", Destination: &s.RetryTimes},
		&cli.Int64Flag{Name: "max-layer-size", Usage: "refuse layers larger than `BYTES` uncompressed (0: no limit)", Destination: &s.MaxLayerSize},
		&cli.BoolFlag{Name: "strict", Usage: "fail an image that would only get a warning", Destination: &s.Strict},
	}
}

// runPublish completes the input (recipe file, environment), plans the run (everything is checked before the first store's hooks
// run) and runs it (publish.Run), printing its events. A signal stops the run after cleaning up.
func runPublish(ctx context.Context, opts publishOptions) error {
	if err := opts.input.Complete(opts.recipe); err != nil {
		return usageError(err)
	}
	plan, err := publish.New(opts.input)
	if err != nil {
		return usageError(err)
	}
	r := &publishRenderer{out: opts.out, quiet: opts.quiet, json: opts.json, multi: plan.NamesStores()}
	if err := publish.Run(ctx, plan, r.observer()); err != nil {
		return err
	}
	return r.err
}
