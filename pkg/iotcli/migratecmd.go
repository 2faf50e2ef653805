package iotcli

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"golang.org/x/oauth2/google"

	"github.com/passerelle-iot/passerelle/pkg/migrate"
	"github.com/passerelle-iot/passerelle/pkg/progress"
)

func (a *app) migrateCommand() *cobra.Command {
	var from, fromToken, fromTokenFile, fromKey, fromTransport, fromCA, export, exportRegistry, report, toProject string
	var regions, registries []string
	var concurrency int
	var dryRun, history bool
	c := &cobra.Command{
		Use:   "migrate",
		Short: "Copy registries, devices, bindings and configs into Passerelle",
		Long: "passerelle migrate copies registries, devices (credentials, metadata, gateway\n" +
			"configuration, blocked state, log level), gateway bindings and the latest configs\n" +
			"from a Cloud IoT-compatible API (--from) or a JSON export (--from-export) into the\n" +
			"endpoint of `passerelle iot` (--endpoint, PASSERELLE_ENDPOINT or the config file).\n" +
			"Ids and names stay; numeric ids are new (the report maps old to new). A second run\n" +
			"skips what is there and converges, so an interrupted run is resumed by running it again.",
		Args:              exactArgs(),
		DisableAutoGenTag: true,
		RunE: func(c *cobra.Command, args []string) error {
			if (from == "") == (export == "") {
				return usagef("from", "Exactly one of (--from | --from-export) must be specified.")
			}
			if concurrency < 1 {
				return usagef("concurrency", "Value must be greater than or equal to 1; received: %d", concurrency)
			}
			ctx := c.Context()
			var src migrate.Source
			if export != "" {
				f, err := os.Open(export)
				if err != nil {
					return fmt.Errorf("Could not read export [%s]: %v", export, err)
				}
				e, err := migrate.ReadExport(f, exportRegistry)
				f.Close()
				if err != nil {
					return err
				}
				src = e
			} else {
				e := Endpoint{Address: from, Transport: fromTransport, Token: fromToken, CAFile: fromCA}
				if fromTokenFile != "" {
					raw, err := os.ReadFile(fromTokenFile)
					if err != nil {
						return fmt.Errorf("from-token-file: %v", err)
					}
					e.Token = strings.TrimSpace(string(raw))
				}
				if fromKey != "" {
					raw, err := os.ReadFile(fromKey)
					if err != nil {
						return fmt.Errorf("from-credentials-file: %v", err)
					}
					creds, err := google.CredentialsFromJSONWithType(ctx, raw, google.ServiceAccount, "https://www.googleapis.com/auth/cloud-platform")
					if err != nil {
						return usagef("from-credentials-file", "not a Google service-account key file: %v", err)
					}
					e.TokenSource = creds.TokenSource
				}
				if e.Transport == "" && strings.HasPrefix(from, "http") {
					e.Transport = "rest"
				}
				cl, err := Dial(ctx, e)
				if err != nil {
					return err
				}
				defer cl.Close()
				p, err := a.project()
				if err != nil {
					return err
				}
				if len(regions) == 0 {
					r, err := a.setting("region", "")
					if err != nil {
						return err
					}
					if r == "" {
						return missingAttribute("registry", "region", "region")
					}
					regions = []string{r}
				}
				api := &migrate.API{Client: cl, Only: registries, CallOptions: migrate.Retry()}
				for _, r := range regions {
					api.Locations = append(api.Locations, "projects/"+p+"/locations/"+r)
				}
				src = api
			}
			dst, err := a.client(ctx)
			if err != nil {
				return err
			}
			var bar *progress.Bar
			var once sync.Once
			opts := migrate.Options{
				Concurrency: concurrency, DryRun: dryRun, ConfigHistory: history, Project: toProject,
				CallOptions: migrate.Retry(),
				Started: func(n int) {
					once.Do(func() { bar = progress.New(a.io.Stderr, "devices", n, stderrIsTerminal(a.io.Stderr)) })
				},
				Progress: func(failed bool) { bar.Add(1, boolInt(failed)) },
			}
			logger := slog.New(slog.NewTextHandler(a.io.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			rep, err := migrate.Run(ctx, logger, src, dst, opts)
			if bar != nil {
				bar.Finish()
			}
			if rep != nil {
				if werr := a.writeReport(rep, report); werr != nil && err == nil {
					err = werr
				}
			}
			if err != nil {
				return err
			}
			if n := rep.Failed(); n > 0 {
				return fmt.Errorf("%d resources could not be copied; see the report", n)
			}
			return nil
		},
	}
	fs := c.Flags()
	fs.StringVar(&from, "from", "", "the source API: https://host (REST), http://host:port, or host:port (gRPC)")
	fs.StringVar(&fromTransport, "from-transport", "", "grpc or rest (default: rest for http(s):// URLs, else grpc)")
	fs.StringVar(&fromToken, "from-token", "", "bearer token for the source")
	fs.StringVar(&fromTokenFile, "from-token-file", "", "file holding the source's bearer token")
	fs.StringVar(&fromKey, "from-credentials-file", "", "Google service-account key file (JSON) for the source")
	fs.StringVar(&fromCA, "from-ca-file", "", "CA the source's TLS certificate is checked against")
	fs.StringVar(&export, "from-export", "", "a JSON export (gcloud iot devices list --format=json, or ListDevices with the full field mask)")
	fs.StringVar(&exportRegistry, "export-registry", "", "registry name (projects/P/locations/L/registries/R) for exported devices whose name has none")
	fs.StringSliceVar(&regions, "region", nil, "source regions to copy (comma-separated; default: the region setting)")
	fs.StringSliceVar(&registries, "registry", nil, "only these registry ids (comma-separated; default: all)")
	fs.StringVar(&toProject, "to-project", "", "project to copy into (default: the same project)")
	fs.IntVar(&concurrency, "concurrency", 16, "calls in flight at once")
	fs.BoolVar(&dryRun, "dry-run", false, "print the plan; change nothing")
	fs.BoolVar(&history, "config-history", false, "replay every kept config version of new devices (one write per second per device)")
	fs.StringVar(&report, "report", "", "write the full report (JSON) to this file")
	return c
}

// writeReport prints the summary and the items that were not skipped on
// stderr (stdout with --dry-run: the plan is the output), and the JSON
// report to path when given.
func (a *app) writeReport(rep *migrate.Report, path string) error {
	w := a.io.Stderr
	if rep.DryRun {
		w = a.io.Stdout
		fmt.Fprintln(w, "Plan (dry run, nothing changed):")
	}
	for _, it := range rep.Items {
		line := fmt.Sprintf("  %-8s %-8s %s", it.Action, it.Kind, it.Name)
		if it.NewNum != 0 || it.OldNum != 0 {
			line += fmt.Sprintf("  numId %d -> %d", it.OldNum, it.NewNum)
		}
		if it.Reason != "" {
			line += "  (" + it.Reason + ")"
		}
		if it.Action == migrate.Failed || rep.DryRun || len(rep.Items) <= 200 {
			fmt.Fprintln(w, line)
		}
	}
	fmt.Fprint(w, rep.Summary())
	if !rep.DryRun {
		fmt.Fprintf(w, "took %s\n", rep.Duration.Round(1e6))
	}
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := writeJSON(f, rep); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
