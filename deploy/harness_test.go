package deploy

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

// This file runs Passerelle as an operator would: each service and each
// NATS node a separate OS process on free loopback ports, stopped by PID.

// binaries builds the Passerelle commands and nats-server (from the module
// in go.mod) once per test binary.
var binaries = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "passerelle-cluster-bin-")
	if err != nil {
		return "", err
	}
	out, err := exec.Command("go", "build", "-o", dir+"/",
		"../cmd/manager", "../cmd/bridge", "../cmd/hub", "../cmd/passerelle",
		"github.com/nats-io/nats-server/v2").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return dir, nil
})

func bin(t *testing.T, name string) string {
	t.Helper()
	dir, err := binaries()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, name)
}

// freePort returns a TCP port free on 127.0.0.1 right now.
func freePort(t *testing.T) int {
	t.Helper()
	return testutil.FreePort(t)
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// logBuffer keeps a process's output for the test to search, and writes
// it to a file of the test's folder.
type logBuffer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	file *os.File
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	return l.file.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// proc is one OS process of the cluster.
type proc struct {
	name string
	args []string
	log  *logBuffer
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit, once done is closed
}

// start runs binary with args as a process named name, stopped (SIGKILL)
// when the test ends if it still runs.
func start(t *testing.T, name, binary string, args ...string) *proc {
	t.Helper()
	// PASSERELLE_CLUSTER_LOGS keeps the processes' logs in that folder.
	dir := os.Getenv("PASSERELLE_CLUSTER_LOGS")
	if dir == "" {
		dir = t.TempDir()
	}
	f, err := os.CreateTemp(dir, name+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{name: name, args: args, log: &logBuffer{file: f}, done: make(chan struct{})}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none")
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			out := p.log.String()
			if len(out) > 6000 {
				out = "...\n" + out[len(out)-6000:]
			}
			t.Logf("--- %s (%v):\n%s", p.name, p.args, out)
		}
	})
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill stops the process with SIGKILL, as a crash would, and waits for it.
func (p *proc) kill() {
	if p.running() {
		_ = syscall.Kill(p.pid(), syscall.SIGKILL)
	}
	<-p.done
}

// signal sends sig and waits up to within for the process to exit,
// returning its exit error.
func (p *proc) signal(t *testing.T, sig syscall.Signal, within time.Duration) error {
	t.Helper()
	_ = syscall.Kill(p.pid(), sig)
	select {
	case <-p.done:
		return p.err
	case <-time.After(within):
		t.Fatalf("%s did not exit within %s of %s", p.name, within, sig)
		return nil
	}
}

// waitLog waits until the process has written text.
func (p *proc) waitLog(t *testing.T, text string, within time.Duration) {
	t.Helper()
	waitUntil(t, within, func() error {
		if strings.Contains(p.log.String(), text) {
			return nil
		}
		if !p.running() {
			return fmt.Errorf("%s exited (%v) before writing %q", p.name, p.err, text)
		}
		return fmt.Errorf("%s has not written %q", p.name, text)
	})
}

// waitUntil polls f until it returns nil; past within the test fails with
// f's last error.
func waitUntil(t *testing.T, within time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", within, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// ready waits until the process's operator address answers /readyz 200.
func ready(t *testing.T, p *proc, opsAddr string, within time.Duration) {
	t.Helper()
	c := &http.Client{Timeout: time.Second}
	waitUntil(t, within, func() error {
		if !p.running() {
			return fmt.Errorf("%s exited: %v", p.name, p.err)
		}
		resp, err := c.Get("http://" + opsAddr + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s /readyz: %s", p.name, resp.Status)
		}
		return nil
	})
}

// natsNode is one nats-server process of a cluster.
type natsNode struct {
	*proc
	port, clusterPort int
	dir               string
}

func (n *natsNode) url() string { return "nats://" + addr(n.port) }

// natsCluster is a NATS cluster with JetStream, one process a node.
type natsCluster struct {
	nodes []*natsNode
}

// startNATSCluster starts n clustered nats-server processes with
// JetStream and waits until JetStream answers.
func startNATSCluster(t *testing.T, n int) *natsCluster {
	t.Helper()
	c := &natsCluster{}
	for range n {
		c.nodes = append(c.nodes, &natsNode{port: freePort(t), clusterPort: freePort(t), dir: t.TempDir()})
	}
	for i := range c.nodes {
		c.startNode(t, i)
	}
	c.waitJetStream(t, 60*time.Second)
	return c
}

// startNode starts (or restarts) node i on its ports and storage.
func (c *natsCluster) startNode(t *testing.T, i int) {
	t.Helper()
	n := c.nodes[i]
	var routes []string
	for j, o := range c.nodes {
		if j != i {
			routes = append(routes, "nats://"+addr(o.clusterPort))
		}
	}
	n.proc = start(t, fmt.Sprintf("nats-%d", i), bin(t, "nats-server"),
		"-a", "127.0.0.1", "-p", strconv.Itoa(n.port), "-n", fmt.Sprintf("n%d", i),
		"-js", "-sd", n.dir, "--cluster_name", "passerelle",
		"--cluster", "nats://"+addr(n.clusterPort), "--routes", strings.Join(routes, ","))
}

// urls is the cluster's client URLs, comma-separated, as the services take
// them.
func (c *natsCluster) urls() string {
	var u []string
	for _, n := range c.nodes {
		u = append(u, n.url())
	}
	return strings.Join(u, ",")
}

// waitJetStream waits until JetStream answers through every running node.
func (c *natsCluster) waitJetStream(t *testing.T, within time.Duration) {
	t.Helper()
	for _, n := range c.nodes {
		if !n.running() {
			continue
		}
		waitUntil(t, within, func() error {
			nc, err := nats.Connect(n.url(), nats.Timeout(time.Second))
			if err != nil {
				return err
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, err = js.AccountInfo(ctx)
			return err
		})
	}
}

// connect opens a NATS connection to the cluster for the test's own reads.
func (c *natsCluster) connect(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(c.urls(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}
