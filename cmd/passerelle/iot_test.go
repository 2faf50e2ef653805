package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/passerelle-iot/passerelle/pkg/adminauth"
	"github.com/passerelle-iot/passerelle/pkg/config"
	"github.com/passerelle-iot/passerelle/pkg/iotcli"
	"github.com/passerelle-iot/passerelle/pkg/store/sqlstore"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/manager"
)

var update = flag.Bool("update", false, "rewrite the golden files of the iot tests")

// adminAPI is a manager serving on a free loopback port, with an admin
// token, on SQLite in a temporary folder.
type adminAPI struct {
	addr, token string
}

func startManager(t testing.TB) *adminAPI {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := sqlstore.Open(context.Background(), logger, filepath.Join(t.TempDir(), "passerelle.db"))
	if err != nil {
		t.Fatal(err)
	}
	token := testutil.Must(adminauth.NewToken())
	var buf bytes.Buffer
	if err := adminauth.WriteTokenLine(&buf, "admin", adminauth.RoleAdmin, token); err != nil {
		t.Fatal(err)
	}
	tokens := testutil.Must(adminauth.ParseTokens(&buf, "test"))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := manager.New(logger, st, manager.WithTokens(tokens))
	stop := testutil.Serve(t, func(ctx context.Context) error { return srv.Serve(ctx, lis) })
	t.Cleanup(func() { stop(); st.Close() })
	return &adminAPI{addr: lis.Addr().String(), token: token}
}

// env is the environment `passerelle iot` reads its settings from, with
// a config folder of its own.
func (a *adminAPI) env(t testing.TB, extra ...string) config.Env {
	m := map[string]string{
		"PASSERELLE_ENDPOINT":   a.addr,
		"PASSERELLE_TOKEN":      a.token,
		"PASSERELLE_PROJECT":    "p1",
		"PASSERELLE_CONFIG_DIR": t.TempDir(),
	}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	return config.MapEnv(m)
}

// runIoT runs `passerelle iot ARGS` through iotcli with its own stdout.
func runIoT(t testing.TB, env config.Env, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runCommand(t, env, append([]string{"iot"}, args...)...)
}

// runCommand runs `passerelle ARGS` for one of iotcli's commands, with
// stdin empty (not a terminal) and stdout apart from stderr.
func runCommand(t testing.TB, env config.Env, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = iotcli.Run(t.Context(), args, iotcli.IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut}, env)
	return out.String(), errOut.String(), code
}

// mustIoT is iot that fails the test unless the command exits 0.
func mustIoT(t testing.TB, env config.Env, args ...string) string {
	t.Helper()
	out, errOut, code := runIoT(t, env, args...)
	if code != 0 {
		t.Fatalf("passerelle iot %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

var (
	timestampRE = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`)
	paddingRE   = regexp.MustCompile(`(\S) {2,}`)
)

// normalize replaces what changes from run to run (times) so output can
// be compared with a golden file. Times vary in length (protojson drops
// trailing zeros of the nanoseconds), and so does a table's padding
// around them: where there are times, column gaps become two spaces.
func normalize(s string) string {
	if !timestampRE.MatchString(s) {
		return s
	}
	return paddingRE.ReplaceAllString(timestampRE.ReplaceAllString(s, "TIMESTAMP"), "$1  ")
}

func testdata(name string) string { return filepath.Join("testdata", "iot", name) }

// TestIoTGolden runs each command in each output format against a
// running manager and compares stdout, stderr and the exit code with
// testdata/iot/golden/NAME.txt (go test -run TestIoTGolden -update
// rewrites them).
func TestIoTGolden(t *testing.T) {
	api := startManager(t)
	env := api.env(t)
	r := []string{"--region=us-central1"}
	rr := []string{"--region=us-central1", "--registry=reg1"}
	setup := [][]string{
		append([]string{"registries", "create", "reg1", "--event-notification-config=topic=events1,subfolder=alerts", "--event-notification-config=topic=events2", "--state-pubsub-topic=state1", "--log-level=info"}, r...),
		append([]string{"registries", "create", "reg2", "--no-enable-http-config", "--event-notification-config=topic=projects/p1/topics/events3"}, r...),
		append([]string{"devices", "create", "dev1", "--public-key", "path=" + testdata("rsa_cert.pem") + ",type=rs256,expiration-time=2040-01-02T03:04:05Z", "--metadata=color=red,size=2"}, rr...),
		append([]string{"devices", "create", "dev2", "--public-key", "path=" + testdata("ec_public.pem") + ",type=es256", "--blocked", "--log-level=debug"}, rr...),
		append([]string{"devices", "create", "gw1", "--device-type=gateway", "--auth-method=association-only", "--public-key", "path=" + testdata("ec_public.pem") + ",type=ES256_PEM"}, rr...),
		{"devices", "gateways", "bind", "--gateway=gw1", "--device=dev1", "--device-region=us-central1", "--device-registry=reg1"},
		append([]string{"devices", "configs", "update", "--device=dev1", "--config-data=fan=on"}, rr...),
		{"registries", "credentials", "create", "--registry=reg2", "--region=us-central1", "--path=" + testdata("rsa_cert.pem")},
	}
	for _, args := range setup {
		mustIoT(t, env, args...)
	}
	cases := []struct {
		name string
		args []string
	}{
		{"registries-list", append([]string{"registries", "list"}, r...)},
		{"registries-list-json", append([]string{"registries", "list", "--format=json"}, r...)},
		{"registries-list-yaml", append([]string{"registries", "list", "--format=yaml"}, r...)},
		{"registries-list-value", append([]string{"registries", "list", "--format=value(id,httpConfig.httpEnabledState)"}, r...)},
		{"registries-list-csv", append([]string{"registries", "list", "--format=csv"}, r...)},
		{"registries-list-uri", append([]string{"registries", "list", "--uri"}, r...)},
		{"registries-list-filter-limit", append([]string{"registries", "list", "--filter=id:reg*", "--sort-by=~id", "--limit=1"}, r...)},
		{"registries-describe", append([]string{"registries", "describe", "reg1"}, r...)},
		{"registries-describe-json", append([]string{"registries", "describe", "reg1", "--format=json"}, r...)},
		{"registries-describe-missing", append([]string{"registries", "describe", "nope"}, r...)},
		{"registries-update-nothing", append([]string{"registries", "update", "reg2"}, r...)},
		{"registries-credentials-list", []string{"registries", "credentials", "list", "--registry=reg2", "--region=us-central1"}},
		{"registries-credentials-describe", []string{"registries", "credentials", "describe", "0", "--registry=reg2", "--region=us-central1", "--format=value(publicKeyCertificate.format,publicKeyCertificate.x509Details.subject)"}},
		{"registries-credentials-bad-index", []string{"registries", "credentials", "delete", "1", "--registry=reg2", "--region=us-central1", "--quiet"}},
		{"devices-list", append([]string{"devices", "list"}, rr...)},
		{"devices-list-json", append([]string{"devices", "list", "--format=json"}, rr...)},
		{"devices-list-yaml", append([]string{"devices", "list", "--format=yaml"}, rr...)},
		{"devices-list-csv", append([]string{"devices", "list", "--format=csv"}, rr...)},
		{"devices-list-value", append([]string{"devices", "list", "--format=value(id,numId,blocked)"}, rr...)},
		{"devices-list-table-box", append([]string{"devices", "list", "--format=table[box](id,name.basename():label=NAME_TAIL,metadata.color)", "--device-field-mask=metadata,name"}, rr...)},
		{"devices-list-filter", append([]string{"devices", "list", "--filter=blocked=true"}, rr...)},
		{"devices-list-gateways", append([]string{"devices", "list", "--device-type=gateway"}, rr...)},
		{"devices-list-page-size", append([]string{"devices", "list", "--page-size=1", "--format=value(id)"}, rr...)},
		{"devices-list-empty", []string{"devices", "list", "--region=us-central1", "--registry=reg2"}},
		{"devices-describe", append([]string{"devices", "describe", "dev1"}, rr...)},
		{"devices-describe-json", append([]string{"devices", "describe", "dev1", "--format=json"}, rr...)},
		{"devices-describe-value", append([]string{"devices", "describe", "dev1", "--format=value(id,metadata.color,credentials[0].publicKey.format)"}, rr...)},
		{"devices-describe-full-name", []string{"devices", "describe", "projects/p1/locations/us-central1/registries/reg1/devices/dev2", "--format=value(id)"}},
		{"devices-describe-missing", append([]string{"devices", "describe", "nope"}, rr...)},
		{"devices-describe-no-region", []string{"devices", "describe", "dev1", "--registry=reg1"}},
		{"devices-credentials-list", append([]string{"devices", "credentials", "list", "--device=dev1"}, rr...)},
		{"devices-credentials-describe", append([]string{"devices", "credentials", "describe", "0", "--device=dev2"}, rr...)},
		{"devices-credentials-bad-index", append([]string{"devices", "credentials", "describe", "5", "--device=dev2"}, rr...)},
		{"devices-configs-list", append([]string{"devices", "configs", "list", "--device=dev1"}, rr...)},
		{"devices-configs-describe", append([]string{"devices", "configs", "describe", "--device=dev1"}, rr...)},
		{"devices-configs-get-value", append([]string{"devices", "configs", "get-value", "--device=dev1"}, rr...)},
		{"devices-states-list", append([]string{"devices", "states", "list", "--device=dev1"}, rr...)},
		{"gateways-list-bound-devices", append([]string{"devices", "gateways", "list-bound-devices", "--gateway=gw1"}, rr...)},
		{"gateways-list", append([]string{"devices", "gateways", "list", "--device=dev1", "--format=json"}, rr...)},
		{"commands-send-offline", append([]string{"devices", "commands", "send", "--device=dev1", "--command-data=hi"}, rr...)},
		{"delete-no-tty", append([]string{"devices", "delete", "dev2"}, rr...)},
		{"flag-bad-key-type", append([]string{"devices", "create", "dev9", "--public-key", "path=x.pem,type=dsa"}, rr...)},
		{"flag-bad-public-key", append([]string{"devices", "create", "dev9", "--public-key", "path=x.pem"}, rr...)},
		{"flag-unknown", append([]string{"devices", "list", "--colour=red"}, rr...)},
		{"flag-bad-format", append([]string{"devices", "list", "--format=xml"}, rr...)},
		{"flag-bad-limit", append([]string{"devices", "list", "--limit=many"}, rr...)},
		{"flag-missing-positional", append([]string{"devices", "describe"}, rr...)},
		{"flag-bad-log-level", append([]string{"devices", "update", "dev1", "--log-level=loud"}, rr...)},
		{"flag-bad-metadata", append([]string{"devices", "update", "dev1", "--metadata=novalue"}, rr...)},
	}
	// Over REST the output is the same, byte for byte.
	restEnv := api.env(t, "PASSERELLE_TRANSPORT", "rest")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runIoT(t, env, tc.args...)
			rout, rerr, rcode := runIoT(t, restEnv, tc.args...)
			if normalize(rout) != normalize(out) || normalize(rerr) != normalize(errOut) || rcode != code {
				t.Errorf("over REST:\n%s%s--- exit %d\nover gRPC:\n%s%s--- exit %d", rout, rerr, rcode, out, errOut, code)
			}
			got := normalize(fmt.Sprintf("$ passerelle iot %s\n%s--- stderr ---\n%s--- exit %d\n", strings.Join(tc.args, " "), out, errOut, code))
			golden := filepath.Join("testdata", "iot", "golden", tc.name+".txt")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test -run TestIoTGolden -update writes it)", err)
			}
			if got != string(want) {
				t.Errorf("output differs from %s:\n--- got\n%s\n--- want\n%s", golden, got, want)
			}
		})
	}
	// Mutations change what describe shows.
	mustIoT(t, env, append([]string{"devices", "update", "dev1", "--no-blocked", "--metadata=color=blue", "--log-level=error"}, rr...)...)
	if out := mustIoT(t, env, append([]string{"devices", "describe", "dev1", "--format=value(metadata.color,logLevel)"}, rr...)...); out != "blue\tERROR\n" {
		t.Errorf("after update, describe says %q", out)
	}
	mustIoT(t, env, append([]string{"devices", "delete", "dev2", "--quiet"}, rr...)...)
	if _, errOut, code := runIoT(t, env, append([]string{"devices", "describe", "dev2"}, rr...)...); code != 1 || !strings.Contains(errOut, "NOT_FOUND") {
		t.Errorf("describe after delete: exit %d, %s", code, errOut)
	}
}
