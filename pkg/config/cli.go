package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
)

// OneLine joins a multi-line error (errors.Join, database drivers) into the
// one line a command prints before it exits.
func OneLine(err error) string {
	return strings.NewReplacer("\n\t", "; ", "\n", "; ").Replace(err.Error())
}

// RedactURL hides the password of a URL (a database or NATS URL) so that it
// can be printed and logged.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}

// Parse reads a command's flags: args first, then the PASSERELLE_*
// environment for the flags not given. A mistake is one error line for the
// caller to print; the usage (header, then the flags) goes to stderr only
// for -h/--help, when Parse returns flag.ErrHelp. Positional arguments are
// refused: every Passerelle command takes flags only.
func Parse(fs *flag.FlagSet, args []string, stderr io.Writer, lookupEnv func(string) (string, bool), header string) error {
	var usage bytes.Buffer
	fs.SetOutput(&usage)
	fs.Usage = func() {
		fmt.Fprintf(&usage, "%s\nEvery flag may also be set as %s<FLAG> in the environment; flags win.\n\n", header, EnvPrefix)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			_, _ = stderr.Write(usage.Bytes())
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: %s takes flags only (see --help)", fs.Arg(0), fs.Name())
	}
	return ApplyEnv(fs, lookupEnv)
}
