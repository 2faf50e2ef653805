package iotcli

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/passerelle-iot/passerelle/pkg/iotcli/format"
)

func (a *app) iotCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "iot",
		Short: "Manage Cloud IoT registries and devices, as gcloud iot did",
		Long: "passerelle iot mirrors gcloud iot: the same commands, flags and output, against\n" +
			"any Cloud IoT-compatible admin API (Passerelle's, or another).\n\n" +
			"Connection settings come from flags, PASSERELLE_* variables, or\n" +
			"`passerelle iot config set KEY VALUE` (kept in the user's config folder, mode 0600).",
		DisableAutoGenTag: true,
	}
	a.addGlobalFlags(root)
	root.AddCommand(a.configCommand(), a.registriesCommand(), a.devicesCommand())
	return root
}

func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs, RunE: func(c *cobra.Command, args []string) error {
		return usagef("", "a command is required: one of %s", subNames(c))
	}}
	c.AddCommand(subs...)
	return c
}

func subNames(c *cobra.Command) string {
	var names []string
	for _, s := range c.Commands() {
		if s.IsAvailableCommand() {
			names = append(names, s.Name())
		}
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// listFlags are gcloud's list flags.
type listFlags struct {
	filter   string
	sortBy   []string
	limit    int
	pageSize int32
	uri      bool
}

func (l *listFlags) add(c *cobra.Command, paging, uri bool) {
	f := c.Flags()
	f.StringVar(&l.filter, "filter", "", "client-side filter: KEY:PATTERN, KEY=VALUE, KEY!=VALUE joined by AND, OR, NOT")
	f.StringSliceVar(&l.sortBy, "sort-by", nil, "comma-separated keys to sort by; ~KEY sorts descending")
	f.IntVar(&l.limit, "limit", 0, "the most items to list (default unlimited)")
	if paging {
		f.Int32Var(&l.pageSize, "page-size", 0, "items per API call (the server's default when 0)")
	}
	if uri {
		f.BoolVar(&l.uri, "uri", false, "print the resources' URIs instead of the default output")
	}
}

func (l *listFlags) check() error {
	if l.limit < 0 {
		return usagef("limit", "Value must be greater than or equal to 1; received: %d", l.limit)
	}
	if l.pageSize < 0 {
		return usagef("page-size", "Value must be greater than or equal to 1; received: %d", l.pageSize)
	}
	if _, err := format.ParseFilter(l.filter); err != nil {
		return usagef("filter", "%s", err.Error())
	}
	return nil
}

// uriOf is the REST URI gcloud printed for --uri.
func uriOf(name string) string { return "https://cloudiot.googleapis.com/v1/" + name }

// printList writes messages in the --format in force (def by default),
// after --sort-by, --filter and --limit.
func printList[M proto.Message](a *app, items []M, l listFlags, def string, extra func(int, map[string]any)) error {
	records := make([]any, 0, len(items))
	for i, m := range items {
		r, err := format.Record(m)
		if err != nil {
			return err
		}
		if extra != nil {
			if mm, ok := r.(map[string]any); ok {
				extra(i, mm)
			}
		}
		records = append(records, r)
	}
	records, err := format.ListOptions{Filter: l.filter, SortBy: l.sortBy, Limit: l.limit}.Apply(records)
	if err != nil {
		return usagef("filter", "%s", err.Error())
	}
	if l.uri {
		for _, r := range records {
			if name, ok := format.Lookup(r, []string{"name"}).(string); ok {
				fmt.Fprintln(a.io.Stdout, uriOf(name))
			}
		}
		return nil
	}
	spec, err := a.printer(def)
	if err != nil {
		return err
	}
	if len(records) == 0 && a.flags.format == "" {
		a.status("Listed 0 items.")
		return nil
	}
	return spec.Print(a.io.Stdout, records, true)
}

// printOne writes one message, YAML by default.
func printOne(a *app, m proto.Message) error {
	spec, err := a.printer("yaml")
	if err != nil {
		return err
	}
	r, err := format.Record(m)
	if err != nil {
		return err
	}
	return spec.Print(a.io.Stdout, []any{r}, false)
}

// settingsFor checks key (when not empty) and loads the config file.
func (a *app) settingsFor(key string) error {
	if key != "" {
		if err := checkSettingKey(key); err != nil {
			return err
		}
	}
	_, err := a.setting("", "")
	return err
}

// changeSetting sets (or, when value is nil, removes) a setting and
// saves the file.
func (a *app) changeSetting(key string, value *string) error {
	if err := a.settingsFor(key); err != nil {
		return err
	}
	if value == nil {
		delete(a.settings, key)
	} else {
		a.settings[key] = *value
	}
	if err := a.settings.save(a.path); err != nil {
		return err
	}
	if value == nil {
		a.status("Unset property [%s].", key)
	} else {
		a.status("Updated property [%s].", key)
	}
	return nil
}

func (a *app) configCommand() *cobra.Command {
	set := &cobra.Command{
		Use:   "set KEY VALUE",
		Short: "Set a connection setting (endpoint, transport, token, token-file, ca-file, project, region)",
		Args:  exactArgs("KEY", "VALUE"),
		RunE:  func(c *cobra.Command, args []string) error { return a.changeSetting(args[0], &args[1]) },
	}
	unset := &cobra.Command{
		Use:   "unset KEY",
		Short: "Remove a setting",
		Args:  exactArgs("KEY"),
		RunE:  func(c *cobra.Command, args []string) error { return a.changeSetting(args[0], nil) },
	}
	get := &cobra.Command{
		Use:   "get KEY",
		Short: "Print a setting's value from the config file",
		Args:  exactArgs("KEY"),
		RunE: func(c *cobra.Command, args []string) error {
			if err := a.settingsFor(args[0]); err != nil {
				return err
			}
			v, ok := a.settings[args[0]]
			if !ok {
				a.status("(unset)")
				return nil
			}
			fmt.Fprintln(a.io.Stdout, v)
			return nil
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "Print the config file's settings (the token is not shown)",
		Args:  exactArgs(),
		RunE: func(c *cobra.Command, args []string) error {
			if err := a.settingsFor(""); err != nil {
				return err
			}
			keys := make([]string, 0, len(a.settings))
			for k := range a.settings {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				v := a.settings[k]
				if k == "token" {
					v = "(set)"
				}
				fmt.Fprintf(a.io.Stdout, "%s = %s\n", k, v)
			}
			a.status("Settings file: %s", a.path)
			return nil
		},
	}
	return group("config", "View and set the connection settings", set, unset, get, list)
}
