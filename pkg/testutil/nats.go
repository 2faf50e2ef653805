package testutil

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATSNode is a NATS server with JetStream that a test runs in its process
// on fixed ports and a fixed folder, so that it can stop it and start it
// again as the same server: a restart, or a node of a cluster coming back.
// It is stopped when the test ends.
type NATSNode struct {
	// Opts are the server's options; change them before Start.
	Opts server.Options

	tb  testing.TB
	srv *server.Server
}

// NewNATSNode returns a stopped single server named name on 127.0.0.1.
func NewNATSNode(tb testing.TB, name string) *NATSNode {
	n := &NATSNode{tb: tb, Opts: server.Options{
		ServerName: name,
		Host:       "127.0.0.1",
		Port:       FreePort(tb),
		JetStream:  true,
		StoreDir:   tb.TempDir(),
		NoLog:      true,
		NoSigs:     true,
	}}
	tb.Cleanup(n.Stop)
	return n
}

// URL is the server's client URL.
func (n *NATSNode) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.Opts.Port) }

// Server is the running server, or nil while it is stopped.
func (n *NATSNode) Server() *server.Server { return n.srv }

// Start starts the server (again) and waits until it takes clients.
func (n *NATSNode) Start() {
	n.tb.Helper()
	if err := n.launch(); err != nil {
		n.tb.Fatal(err)
	}
	if !n.srv.ReadyForConnections(10 * time.Second) {
		n.tb.Fatalf("NATS server %s did not start", n.Opts.ServerName)
	}
}

func (n *NATSNode) launch() error {
	opts := n.Opts // the server keeps and changes its options
	srv, err := server.NewServer(&opts)
	if err != nil {
		return fmt.Errorf("NATS server %s: %w", n.Opts.ServerName, err)
	}
	srv.Start()
	n.srv = srv
	return nil
}

// Stop shuts the server down, as a killed process closes its sockets; what
// it stored stays in its folder.
func (n *NATSNode) Stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

// StartNATSCluster starts a cluster of size servers with JetStream on
// 127.0.0.1 and waits until JetStream has a meta leader.
func StartNATSCluster(tb testing.TB, size int) []*NATSNode {
	tb.Helper()
	nodes := make([]*NATSNode, size)
	var routes []string
	for i := range nodes {
		nodes[i] = NewNATSNode(tb, fmt.Sprintf("n%d", i+1))
		nodes[i].Opts.Cluster = server.ClusterOpts{Name: "passerelle-test", Host: "127.0.0.1", Port: FreePort(tb)}
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", nodes[i].Opts.Cluster.Port))
	}
	// Side by side: a server may wait for its routes while it starts.
	started := make(chan error, size)
	for _, n := range nodes {
		n.Opts.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		go func() { started <- n.launch() }()
	}
	for range nodes {
		if err := <-started; err != nil {
			tb.Fatal(err)
		}
	}
	for _, n := range nodes {
		if !n.srv.ReadyForConnections(10 * time.Second) {
			tb.Fatalf("NATS server %s did not start", n.Opts.ServerName)
		}
	}
	WaitFor(tb, 30*time.Second, func() error {
		for _, n := range nodes {
			if n.srv.JetStreamIsLeader() {
				return nil
			}
		}
		return errors.New("no JetStream meta leader yet")
	})
	return nodes
}

// ClusterURL is the URL list a client of the cluster is given.
func ClusterURL(nodes []*NATSNode) string {
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.URL())
	}
	return strings.Join(urls, ",")
}
