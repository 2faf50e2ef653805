package deploy

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/passerelle-iot/passerelle/pkg/config"
)

type compose struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       string            `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	DependsOn   map[string]any    `yaml:"depends_on"`
}

// flagLine matches a flag in Go's flag.PrintDefaults output.
var flagLine = regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`)

// TestComposeFile builds the binaries and checks every Passerelle service of
// docker-compose.yml against them: the command exists, every flag it passes
// and every PASSERELLE_* variable it sets is a flag of that command, the
// addresses it listens on are published, and what it depends on exists.
func TestComposeFile(t *testing.T) {
	raw, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("docker-compose.yml does not parse: %v", err)
	}
	for _, name := range []string{"postgres", "nats-1", "nats-2", "nats-3", "jaeger", "haproxy",
		"manager-1", "manager-2", "bridge-1", "bridge-2", "hub-1", "hub-2"} {
		if _, ok := c.Services[name]; !ok {
			t.Errorf("docker-compose.yml has no %q service", name)
		}
	}

	lb := haproxyServers(t)
	for target := range lb {
		host, _, _ := net.SplitHostPort(target)
		if _, ok := c.Services[host]; !ok {
			t.Errorf("haproxy.cfg balances to %s, which is not a service", target)
		}
	}

	bin := t.TempDir()
	out, err := exec.Command("go", "build", "-o", bin+"/", "../cmd/passerelle", "../cmd/manager", "../cmd/bridge", "../cmd/hub").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	flagsOf := func(t *testing.T, command []string) map[string]bool {
		t.Helper()
		args := []string{"--help"}
		if command[0] == "passerelle" {
			args = []string{command[1], "--help"}
		}
		out, _ := exec.Command(filepath.Join(bin, command[0]), args...).CombinedOutput()
		flags := map[string]bool{}
		for _, m := range flagLine.FindAllStringSubmatch(string(out), -1) {
			flags[m[1]] = true
		}
		if len(flags) == 0 {
			t.Fatalf("%v --help lists no flags:\n%s", command, out)
		}
		return flags
	}

	for name, s := range c.Services {
		for dep := range s.DependsOn {
			if _, ok := c.Services[dep]; !ok {
				t.Errorf("%s depends on %q, which is not a service", name, dep)
			}
		}
		for _, v := range s.Volumes {
			vol, _, _ := strings.Cut(v, ":")
			if _, ok := c.Volumes[vol]; !ok && !strings.HasPrefix(vol, ".") && !strings.HasPrefix(vol, "/") {
				t.Errorf("%s mounts volume %q, which is not declared", name, vol)
			}
		}
		if s.Build == "" {
			continue // a third-party image
		}
		t.Run(name, func(t *testing.T) {
			if len(s.Command) == 0 {
				t.Fatal("no command")
			}
			if !slices.Contains([]string{"passerelle", "manager", "bridge", "hub"}, s.Command[0]) {
				t.Fatalf("command %q is not a Passerelle binary", s.Command[0])
			}
			flags := flagsOf(t, s.Command)
			for _, arg := range s.Command[1:] {
				if f, ok := strings.CutPrefix(arg, "--"); ok {
					f, _, _ = strings.Cut(f, "=")
					if !flags[f] {
						t.Errorf("%v passes --%s, which it does not accept", s.Command, f)
					}
				}
			}
			for env, value := range s.Environment {
				if strings.HasPrefix(env, "OTEL_") {
					if env == "OTEL_EXPORTER_OTLP_ENDPOINT" && !strings.Contains(value, "jaeger:") {
						t.Errorf("%s sends traces to %s, not to the jaeger service", name, value)
					}
					continue
				}
				flag, ok := strings.CutPrefix(env, config.EnvPrefix)
				if !ok {
					t.Errorf("%s sets %s, which no Passerelle binary reads", name, env)
					continue
				}
				flag = strings.ToLower(strings.ReplaceAll(flag, "_", "-"))
				if !flags[flag] || config.EnvName(flag) != env {
					t.Errorf("%s sets %s, but %s has no --%s flag", name, env, s.Command[0], flag)
				}
				if flag == "advertise-addr" {
					if h, _, err := net.SplitHostPort(value); err != nil || h != name {
						t.Errorf("%s=%q: want %s:port, the address other replicas reach it at", env, value, name)
					}
					continue
				}
				if strings.HasSuffix(flag, "addr") || flag == "listen" {
					_, port, err := net.SplitHostPort(value)
					if err != nil {
						t.Errorf("%s=%q is not host:port", env, value)
						continue
					}
					// Reachable: published, or behind the load balancer.
					published := slices.ContainsFunc(s.Ports, func(p string) bool { return strings.HasSuffix(p, ":"+port) })
					if !published && !lb[name+":"+port] && flag != "ops-addr" {
						t.Errorf("%s listens on %s (%s) but neither publishes it nor sits behind haproxy.cfg on it", name, port, env)
					}
				}
				if strings.HasSuffix(flag, "-url") && strings.Contains(value, "://") {
					for _, u := range strings.Split(value, ",") { // a NATS cluster is a list
						host := strings.Split(strings.Split(strings.SplitN(u, "://", 2)[1], "/")[0], "@")
						h, _, _ := net.SplitHostPort(host[len(host)-1])
						if _, ok := c.Services[h]; !ok {
							t.Errorf("%s=%s names host %q, which is not a service", env, value, h)
						}
					}
				}
			}
		})
	}
}

// haproxyServers returns the host:port of every server line of
// haproxy.cfg.
func haproxyServers(t *testing.T) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile("haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	servers := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s*server \S+ (\S+)`).FindAllStringSubmatch(string(raw), -1) {
		servers[m[1]] = true
	}
	if len(servers) == 0 {
		t.Fatal("haproxy.cfg has no server line")
	}
	return servers
}

// TestHAProxyConfig checks deploy/haproxy.cfg with HAProxy itself (Debian's
// haproxy package; .ci/run installs it).
func TestHAProxyConfig(t *testing.T) {
	path, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("haproxy is not installed under CI=true (apt-get install haproxy)")
		}
		t.Skip("haproxy is not installed")
	}
	if out, err := exec.Command(path, "-c", "-f", "haproxy.cfg").CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
}
