// Package iotcli is `passerelle iot`, a work-alike of `gcloud iot`: the
// same commands, flags, value syntax, default columns, YAML and error
// lines, so that a script written for Cloud IoT Core runs after
// s/gcloud iot/passerelle iot/. It talks to any Cloud IoT-compatible
// admin API through Google's Go client (cloud.google.com/go/iot/apiv1),
// over gRPC or REST. It also holds `passerelle migrate` (pkg/migrate does
// the copying).
package iotcli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/passerelle-iot/passerelle/pkg/config"
	"github.com/passerelle-iot/passerelle/pkg/iotcli/format"
)

// IO is where a command reads and writes.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// app is one run of a command: its streams, environment, settings and
// the client, made on first use.
type app struct {
	io       IO
	env      config.Env
	settings Settings
	path     string // the settings file

	// Global flags.
	flags struct {
		endpoint, transport, token, tokenFile, caFile, project, format string
		quiet                                                          bool
	}
	conn *conn
}

// Commands are the first arguments of `passerelle` that Run handles.
var Commands = []string{"iot", "migrate", "completion", cobra.ShellCompRequestCmd, cobra.ShellCompNoDescRequestCmd}

// Run runs `passerelle ARGS...` for args[0] one of Commands (iot,
// migrate, completion) and returns its exit code: 0 on success, 1 on an
// API or client-side error, 2 on a flag error.
func Run(ctx context.Context, args []string, streams IO, env config.Env) int {
	a := &app{io: streams, env: env}
	root := &cobra.Command{
		Use:               "passerelle",
		Short:             "Passerelle, a self-hosted Cloud IoT Core",
		DisableAutoGenTag: true,
	}
	migrate := a.migrateCommand()
	root.AddCommand(a.iotCommand(), migrate)
	a.addGlobalFlags(migrate)
	_ = migrate.PersistentFlags().MarkHidden("format") // migrate prints a report, not resources
	return a.execute(ctx, root, args)
}

func (a *app) execute(ctx context.Context, root *cobra.Command, args []string) int {
	defer func() {
		if a.conn != nil {
			a.conn.close()
		}
	}()
	root.SetArgs(args)
	root.SetIn(a.io.Stdin)
	root.SetOut(a.io.Stdout)
	root.SetErr(a.io.Stderr)
	root.SilenceErrors = true
	root.SilenceUsage = true
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return flagError(err)
	})
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	name := strings.ReplaceAll(cmd.CommandPath(), " ", ".")
	var ue *usageError
	switch {
	case errors.As(err, &ue):
		msg := ue.msg
		if ue.flag != "" {
			msg = "argument --" + ue.flag + ": " + msg
		}
		fmt.Fprintf(a.io.Stderr, "ERROR: (%s) %s\nUsage: %s\n  For detailed information on this command and its flags, run:\n    %s --help\n", name, msg, cmd.UseLine(), cmd.CommandPath())
		return 2
	case strings.HasPrefix(err.Error(), "unknown command"), strings.HasPrefix(err.Error(), "accepts "), strings.HasPrefix(err.Error(), "requires "):
		fmt.Fprintf(a.io.Stderr, "ERROR: (%s) %s\nUsage: %s\n", name, err.Error(), cmd.UseLine())
		return 2
	}
	fmt.Fprintf(a.io.Stderr, "ERROR: (%s) %s\n", name, apiMessage(err))
	return 1
}

// badValue matches pflag's message for a value of the wrong type.
var badValue = regexp.MustCompile(`^invalid argument "(.*)" for "(?:-\w, )?--([\w-]+)" flag: (?:strconv\.Parse(\w+)|.*)`)

// flagError rewords pflag's errors as gcloud's: the flag, the value and
// the syntax accepted.
func flagError(err error) error {
	m := badValue.FindStringSubmatch(err.Error())
	if m == nil {
		return &usageError{msg: err.Error()}
	}
	want := "a valid value"
	switch m[3] {
	case "Int", "Uint":
		want = "an integer"
	case "Bool":
		want = "true or false"
	}
	return usagef(m[2], "invalid value [%s]: expected %s", m[1], want)
}

// usageError is a flag or argument error: exit 2.
type usageError struct{ flag, msg string }

func (e *usageError) Error() string { return e.msg }

// usagef is a usage error on --flag (flag may be empty).
func usagef(flag, format string, args ...any) error {
	return &usageError{flag: flag, msg: fmt.Sprintf(format, args...)}
}

func (a *app) addGlobalFlags(c *cobra.Command) {
	f := c.PersistentFlags()
	f.StringVar(&a.flags.endpoint, "endpoint", "", "admin API: host:port, http://host:port or https://host (setting endpoint, PASSERELLE_ENDPOINT)")
	f.StringVar(&a.flags.transport, "transport", "", "grpc or rest (setting transport, PASSERELLE_TRANSPORT; default grpc)")
	f.StringVar(&a.flags.token, "token", "", "bearer token (setting token, PASSERELLE_TOKEN)")
	f.StringVar(&a.flags.tokenFile, "token-file", "", "file holding the bearer token (setting token-file, PASSERELLE_TOKEN_FILE)")
	f.StringVar(&a.flags.caFile, "ca-file", "", "CA the endpoint's TLS certificate is checked against (setting ca-file)")
	f.StringVar(&a.flags.project, "project", "", "project id (setting project, PASSERELLE_PROJECT, CLOUDSDK_CORE_PROJECT)")
	f.StringVar(&a.flags.format, "format", "", "json, yaml, none, default, table(KEY,...), value(KEY,...) or csv(KEY,...)")
	f.BoolVarP(&a.flags.quiet, "quiet", "q", false, "answer every prompt with its default (yes)")
	f.String("verbosity", "", "accepted for gcloud scripts; ignored")
	_ = f.MarkHidden("verbosity")
}

// setting is a global setting: the flag, else PASSERELLE_<KEY>, else the
// config file.
func (a *app) setting(key, flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if v, ok := a.env.LookupEnv(config.EnvName(key)); ok && v != "" {
		return v, nil
	}
	if a.settings == nil {
		path, err := settingsFile(a.env)
		if err != nil {
			return "", err
		}
		s, err := loadSettings(path)
		if err != nil {
			return "", err
		}
		a.settings, a.path = s, path
	}
	return a.settings[key], nil
}

// project is --project, else the settings, else CLOUDSDK_CORE_PROJECT.
func (a *app) project() (string, error) {
	p, err := a.setting("project", a.flags.project)
	if err != nil {
		return "", err
	}
	if p == "" {
		p, _ = a.env.LookupEnv("CLOUDSDK_CORE_PROJECT")
	}
	if p == "" {
		return "", errors.New("The required property [project] is not currently set.\nIt can be set on a per-command basis by re-running your command with the [--project] flag.\nYou may set it for your current workspace by running:\n\n  $ passerelle iot config set project VALUE\n\nor it can be set temporarily by the environment variable [PASSERELLE_PROJECT]")
	}
	if isNumber(p) {
		return "", fmt.Errorf("project [%s]: a project number is not accepted, give the project id", p)
	}
	return p, nil
}

func isNumber(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// printer is the --format in force, with def as the command's default.
func (a *app) printer(def string) (*format.Spec, error) {
	f := a.flags.format
	if f == "" {
		f = def
	}
	spec, err := format.Parse(f)
	if err != nil {
		return nil, usagef("format", "%s", err.Error())
	}
	if d, err := format.Parse(def); err == nil {
		spec = spec.WithColumns(d.Columns)
	}
	return spec, nil
}

// status writes a status line on stderr, as gcloud did.
func (a *app) status(format string, args ...any) {
	fmt.Fprintf(a.io.Stderr, format+"\n", args...)
}

// confirm asks before a destructive step: yes with --quiet, an error
// without a terminal.
func (a *app) confirm(message string) error {
	if a.flags.quiet {
		return nil
	}
	f, ok := a.io.Stdin.(*os.File)
	if !ok || !isTerminal(f) {
		return errors.New("This prompt could not be answered because you are not in an interactive session. You can re-run the command with the --quiet flag to accept the default (yes).")
	}
	fmt.Fprintf(a.io.Stderr, "%s\n\nDo you want to continue (Y/n)?  ", message)
	var answer string
	_, _ = fmt.Fscanln(a.io.Stdin, &answer)
	if a := strings.ToLower(strings.TrimSpace(answer)); a == "" || a == "y" || a == "yes" {
		return nil
	}
	return errors.New("Aborted by user.")
}

// noBool registers --name and --no-name; the result is nil when neither
// is given.
type noBool struct {
	name    string
	yes, no bool
	flags   *pflag.FlagSet
}

func addNoBool(fs *pflag.FlagSet, name string, def bool, usage string) *noBool {
	b := &noBool{name: name, flags: fs}
	if def {
		usage += " (default on; --no-" + name + " to turn it off)"
	} else {
		usage += " (--no-" + name + " to turn it off)"
	}
	fs.BoolVar(&b.yes, name, def, usage)
	fs.BoolVar(&b.no, "no-"+name, false, "turn --"+name+" off")
	_ = fs.MarkHidden("no-" + name)
	return b
}

// value is the flag's value when given, else nil.
func (b *noBool) value() *bool {
	switch {
	case b.flags.Changed("no-" + b.name):
		v := !b.no
		return &v
	case b.flags.Changed(b.name):
		v := b.yes
		return &v
	}
	return nil
}

// effective is value() or the default.
func (b *noBool) effective() bool {
	if v := b.value(); v != nil {
		return *v
	}
	return b.yes
}
