package bus_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// freePort returns a TCP port nothing listens on at the moment.
func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// natsNode is a NATS server with JetStream run by a test on fixed ports
// and a fixed folder, so that it can be stopped and started again as the
// same server (a restart, or a node of a cluster coming back).
type natsNode struct {
	tb   testing.TB
	opts server.Options
	srv  *server.Server
}

func (n *natsNode) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.opts.Port) }

// start starts the server (again) and waits until it takes clients.
func (n *natsNode) start() {
	n.tb.Helper()
	opts := n.opts // NewServer keeps and changes its options
	srv, err := server.NewServer(&opts)
	if err != nil {
		n.tb.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		n.tb.Fatalf("NATS server %s did not start", n.opts.ServerName)
	}
	n.srv = srv
}

// stop shuts the server down, as a process that is killed closes its
// sockets; what it stored stays in its folder.
func (n *natsNode) stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

// newNode returns a stopped single server with JetStream.
func newNode(tb testing.TB, name string) *natsNode {
	n := &natsNode{tb: tb, opts: server.Options{
		ServerName: name,
		Host:       "127.0.0.1",
		Port:       freePort(tb),
		JetStream:  true,
		StoreDir:   tb.TempDir(),
		NoLog:      true,
		NoSigs:     true,
	}}
	tb.Cleanup(n.stop)
	return n
}

// newCluster starts a cluster of size servers with JetStream on
// 127.0.0.1 and waits until JetStream has a meta leader.
func newCluster(tb testing.TB, size int) []*natsNode {
	tb.Helper()
	nodes := make([]*natsNode, size)
	var routes []string
	for i := range nodes {
		nodes[i] = newNode(tb, fmt.Sprintf("n%d", i+1))
		nodes[i].opts.Cluster = server.ClusterOpts{Name: "passerelle-test", Host: "127.0.0.1", Port: freePort(tb)}
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", nodes[i].opts.Cluster.Port))
	}
	for _, n := range nodes {
		n.opts.Routes = server.RoutesFromStr(strings.Join(routes, ","))
	}
	// Each server waits for its routes: start them side by side.
	done := make(chan struct{}, size)
	for _, n := range nodes {
		go func() {
			opts := n.opts
			srv, err := server.NewServer(&opts)
			if err != nil {
				panic(err)
			}
			srv.Start()
			n.srv = srv
			done <- struct{}{}
		}()
	}
	for range nodes {
		<-done
	}
	for _, n := range nodes {
		if !n.srv.ReadyForConnections(10 * time.Second) {
			tb.Fatalf("NATS server %s did not start", n.opts.ServerName)
		}
	}
	waitFor(tb, 30*time.Second, "a JetStream meta leader", func() bool {
		for _, n := range nodes {
			if n.srv.JetStreamIsLeader() {
				return true
			}
		}
		return false
	})
	return nodes
}

// clusterURL is the URL list a client of the cluster is given.
func clusterURL(nodes []*natsNode) string {
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.url())
	}
	return strings.Join(urls, ",")
}

// syncBuffer collects log lines written from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func textLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }
