package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
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
// refused: every Passerelle command takes flags only. A PASSERELLE_*
// variable that is no flag of fs is a warning on stderr, naming the
// closest setting.
func Parse(fs *flag.FlagSet, args []string, stderr io.Writer, env Env, header string) error {
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
	for _, w := range UnknownEnv(fs, env) {
		fmt.Fprintf(stderr, "%s: warning: %s\n", fs.Name(), w)
	}
	return ApplyEnv(fs, env.LookupEnv)
}

// SplitAddrs splits a comma-separated list of addresses, as --mqtt-addr
// takes them ("127.0.0.1:8883,127.0.0.1:443"), dropping blanks: "" is no
// address at all.
func SplitAddrs(s string) []string {
	var out []string
	for a := range strings.SplitSeq(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// CheckAddr checks a TCP address to listen on the way net.Listen will
// read it: host:port, the port a number (0 picks a free one), the host an
// IP, a name that resolves, or empty for every interface. flagName names
// the setting in the error.
func CheckAddr(flagName, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q is not an address: give host:port, such as 127.0.0.1:8080 or :8080", flagName, addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%s %q: the port %q is not a number from 0 to 65535", flagName, addr, port)
	}
	if host == "" || net.ParseIP(host) != nil {
		return nil
	}
	if _, err := net.LookupHost(host); err != nil {
		return fmt.Errorf("%s %q: the host %q does not resolve (%v): give an IP address or a known name", flagName, addr, host, err)
	}
	return nil
}

// CheckAddrs checks each address of a comma-separated list (SplitAddrs).
func CheckAddrs(flagName, list string) error {
	var errs []error
	for _, a := range SplitAddrs(list) {
		errs = append(errs, CheckAddr(flagName, a))
	}
	return errors.Join(errs...)
}

// CheckNATSURL checks a NATS URL, or a comma-separated list of them as the
// NATS client takes for a cluster (nats://a:4222,nats://b:4222).
func CheckNATSURL(flagName, list string) error {
	var errs []error
	for _, s := range SplitAddrs(list) {
		u, err := url.Parse(s)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s %q does not parse: %w", flagName, RedactURL(s), err))
		case u.Scheme != "nats" && u.Scheme != "tls" && u.Scheme != "ws" && u.Scheme != "wss":
			errs = append(errs, fmt.Errorf("%s %q: give nats://host:port (or tls://, ws://, wss://), such as nats://127.0.0.1:4222", flagName, RedactURL(s)))
		case u.Host == "":
			errs = append(errs, fmt.Errorf("%s %q has no host: give nats://host:port", flagName, RedactURL(s)))
		}
	}
	return errors.Join(errs...)
}
