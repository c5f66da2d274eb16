package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cargohold/cargohold/layout"
	"github.com/docker/go-units"
	"github.com/urfave/cli/v2"
)

// formatFlag is shared by the read commands (a fresh value each: a cli.Flag keeps state).
func formatFlag() cli.Flag {
	return &cli.StringFlag{Name: "format", Value: "table", Usage: "`table` or json"}
}

func lsCommand() *cli.Command {
	return &cli.Command{
		Name:  "ls",
		Usage: "list the store's images",
		Description: "Reads the store without locking it, as Podman does: it works while a publish runs and\n" +
			"needs no write access.",
		Flags: []cli.Flag{storeFlag(), formatFlag()},
		Action: func(c *cli.Context) error {
			snap, err := readStore(c)
			if err != nil {
				return err
			}
			infos, err := imageInfos(snap)
			if err != nil {
				return cli.Exit(err, exitStore)
			}
			if c.String("format") == "json" {
				return printJSON(infos)
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tIMAGE ID\tSIZE\tPLATFORM\tPUBLISHED")
			for _, info := range infos {
				names := info.Names
				if len(names) == 0 {
					names = []string{"<none>"}
				}
				published := "-"
				if info.Published != nil {
					published = units.HumanDuration(time.Since(*info.Published)) + " ago"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", strings.Join(names, ","), shortID(info.ID),
					units.HumanSize(float64(info.Size)), info.Platform, published)
			}
			return w.Flush()
		},
	}
}

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "show one image: names, digests, platform, source, layers",
		ArgsUsage: "IMAGE   (name, name without registry, or ID)",
		Flags:     []cli.Flag{storeFlag(), formatFlag()},
		Action: func(c *cli.Context) error {
			if c.Args().Len() != 1 {
				return cli.Exit("inspect takes one IMAGE", exitUsage)
			}
			snap, err := readStore(c)
			if err != nil {
				return err
			}
			img, err := snap.Find(c.Args().First())
			if err != nil {
				return cli.Exit(err, exitImageFailed)
			}
			info, err := snap.Info(img)
			if err != nil {
				return cli.Exit(err, exitStore)
			}
			if c.String("format") == "json" {
				return printJSON(info)
			}
			fmt.Printf("ID:        %s\nNames:     %s\nDigest:    %s\nPlatform:  %s\nCreated:   %s\nSize:      %s\n",
				info.ID, strings.Join(info.Names, ", "), info.Digest, info.Platform, info.Created.Format(time.RFC3339),
				units.HumanSize(float64(info.Size)))
			if info.Source != "" {
				fmt.Printf("Source:    %s\n", info.Source)
			}
			if info.Published != nil {
				fmt.Printf("Published: %s\n", info.Published.Format(time.RFC3339))
			}
			fmt.Println("Layers (base first):")
			for _, l := range info.Layers {
				fmt.Printf("  %s  %9s  from %s\n", l.DiffID, units.HumanSize(float64(l.Size)), l.CompressedDigest)
			}
			return nil
		},
	}
}

func readStore(c *cli.Context) (*layout.Snapshot, error) {
	snap, err := layout.Read(c.String("store"))
	if err != nil {
		return nil, cli.Exit(err, exitStore)
	}
	return snap, nil
}

func imageInfos(snap *layout.Snapshot) ([]layout.ImageInfo, error) {
	infos := []layout.ImageInfo{}
	for _, img := range snap.Images {
		info, err := snap.Info(img)
		if err != nil {
			return nil, err
		}
		infos = append(infos, info)
	}
	return infos, nil
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
