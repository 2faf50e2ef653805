package iotcli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"

	iot "cloud.google.com/go/iot/apiv1"
	"github.com/mattn/go-isatty"
	"golang.org/x/oauth2"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/passerelle-iot/passerelle/pkg/migrate"
)

// Endpoint is how to reach a Cloud IoT-compatible admin API.
type Endpoint struct {
	Address   string // host:port, http://host:port or https://host[:port]
	Transport string // grpc or rest
	Token     string // bearer token; empty: none
	CAFile    string // PEM roots for TLS; empty: the system's
	// TokenSource, when set, supplies tokens instead of Token (a Google
	// service-account key).
	TokenSource oauth2.TokenSource
}

type conn struct {
	client *iot.DeviceManagerClient
}

func (c *conn) close() { _ = c.client.Close() }

// bearer sends a bearer token as gRPC per-RPC credentials; over
// plaintext only when the endpoint is on loopback or http://.
type bearer struct {
	ts     oauth2.TokenSource
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	t, err := b.ts.Token()
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + t.AccessToken}, nil
}
func (b bearer) RequireTransportSecurity() bool { return b.secure }

// Dial makes Google's client for e.
func Dial(ctx context.Context, e Endpoint) (*iot.DeviceManagerClient, error) {
	if e.Address == "" {
		return nil, errors.New("no endpoint: give --endpoint, set PASSERELLE_ENDPOINT, or run `passerelle iot config set endpoint HOST:PORT`")
	}
	hostport, secure, err := parseAddress(e.Address)
	if err != nil {
		return nil, err
	}
	ts := e.TokenSource
	if ts == nil && e.Token != "" {
		ts = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: e.Token})
	}
	var tlsConfig *tls.Config
	if secure {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if e.CAFile != "" {
			pem, err := os.ReadFile(e.CAFile)
			if err != nil {
				return nil, fmt.Errorf("ca-file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("ca-file %s holds no PEM certificate", e.CAFile)
			}
			tlsConfig.RootCAs = pool
		}
	}
	switch strings.ToLower(e.Transport) {
	case "", "grpc":
		opts := []option.ClientOption{option.WithEndpoint(hostport), option.WithoutAuthentication()}
		if secure {
			opts = append(opts, option.WithGRPCDialOption(grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig))))
		} else {
			opts = append(opts, option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
		}
		if ts != nil {
			opts = append(opts, option.WithGRPCDialOption(grpc.WithPerRPCCredentials(bearer{ts: ts, secure: secure})))
		}
		return iot.NewDeviceManagerClient(ctx, opts...)
	case "rest", "http":
		scheme := "http://"
		var base http.RoundTripper = http.DefaultTransport
		if secure {
			scheme = "https://"
			t := http.DefaultTransport.(*http.Transport).Clone()
			t.TLSClientConfig = tlsConfig
			base = t
		}
		var rt = base
		if ts != nil {
			rt = &oauth2.Transport{Source: ts, Base: base}
		}
		return iot.NewDeviceManagerRESTClient(ctx, option.WithEndpoint(scheme+hostport), option.WithHTTPClient(&http.Client{Transport: rt}))
	}
	return nil, usagef("transport", "unknown transport [%s]; accepted: grpc, rest", e.Transport)
}

// parseAddress says where to connect and whether with TLS: http:// is
// plaintext, https:// is TLS, a bare host:port is plaintext on loopback
// and TLS elsewhere.
func parseAddress(s string) (hostport string, secure bool, err error) {
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return "", false, usagef("endpoint", "invalid endpoint [%s]; expected host:port, http://host:port or https://host[:port]", s)
		}
		switch u.Scheme {
		case "http":
			if u.Port() == "" {
				return u.Host + ":80", false, nil
			}
			return u.Host, false, nil
		case "https":
			if u.Port() == "" {
				return u.Host + ":443", true, nil
			}
			return u.Host, true, nil
		}
		return "", false, usagef("endpoint", "invalid endpoint [%s]: scheme %q; expected http:// or https://", s, u.Scheme)
	}
	host, _, err := net.SplitHostPort(s)
	if err != nil {
		return "", false, usagef("endpoint", "invalid endpoint [%s]; expected host:port, http://host:port or https://host[:port]", s)
	}
	ip := net.ParseIP(host)
	loopback := host == "localhost" || (ip != nil && ip.IsLoopback())
	return s, !loopback, nil
}

// client returns the client for the global settings, made once.
func (a *app) client(ctx context.Context) (*iot.DeviceManagerClient, error) {
	if a.conn != nil {
		return a.conn.client, nil
	}
	e, err := a.endpoint()
	if err != nil {
		return nil, err
	}
	c, err := Dial(ctx, e)
	if err != nil {
		return nil, err
	}
	a.conn = &conn{client: c}
	return c, nil
}

func (a *app) endpoint() (Endpoint, error) {
	var e Endpoint
	var err error
	get := func(key, flag string) string {
		if err != nil {
			return ""
		}
		var v string
		v, err = a.setting(key, flag)
		return v
	}
	e.Address = get("endpoint", a.flags.endpoint)
	e.Transport = get("transport", a.flags.transport)
	e.Token = get("token", a.flags.token)
	e.CAFile = get("ca-file", a.flags.caFile)
	tokenFile := get("token-file", a.flags.tokenFile)
	if err != nil {
		return e, err
	}
	if e.Token == "" && tokenFile != "" {
		raw, err := os.ReadFile(tokenFile)
		if err != nil {
			return e, fmt.Errorf("token-file: %w", err)
		}
		e.Token = strings.TrimSpace(string(raw))
	}
	return e, nil
}

// apiMessage is an error as gcloud printed it: "CODE: message" for an
// API error, the text otherwise.
func apiMessage(err error) string { return migrate.ErrorText(err) }

func isTerminal(f *os.File) bool {
	return isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
}
