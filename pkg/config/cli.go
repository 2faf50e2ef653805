package config

import (
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
