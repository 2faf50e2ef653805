package cluster_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/passerelle-iot/passerelle/pkg/cluster"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

// leaseCluster starts three NATS servers clustered with JetStream on free
// ports and returns them and the URL list a client connects with.
func leaseCluster(t *testing.T) ([]*server.Server, string) {
	t.Helper()
	free := func() int {
		l := testutil.Must(net.Listen("tcp", "127.0.0.1:0"))
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	const n = 3
	var clusterPorts [n]int
	for i := range clusterPorts {
		clusterPorts[i] = free()
	}
	var srvs []*server.Server
	var urls []string
	for i := range n {
		var routes []string
		for j, p := range clusterPorts {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
			}
		}
		o := &server.Options{
			ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "lease-test", Host: "127.0.0.1", Port: clusterPorts[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		}
		s, err := server.NewServer(o)
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		srvs = append(srvs, s)
	}
	for _, s := range srvs {
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("a NATS server did not start")
		}
		urls = append(urls, s.ClientURL())
	}
	return srvs, strings.Join(urls, ",")
}

// TestLeaseSurvivesNoLeader: leases replicated three times on a cluster
// of three; the server leading the leases' stream is killed. Whether the
// holder's lease outlives the election or not, nobody else takes it
// before the holder has given it up.
func TestLeaseSurvivesNoLeader(t *testing.T) {
	t.Parallel()
	srvs, urls := leaseCluster(t)
	conn := func(name string) (*nats.Conn, jetstream.JetStream) {
		nc, err := nats.Connect(urls, nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc, testutil.Must(jetstream.New(nc))
	}
	log := testutil.Logger(t)
	_, jsA := conn("a")
	_, jsB := conn("b")
	a := cluster.NewLeases(jsA, log, "a", 3)
	t.Cleanup(a.Close)
	b := cluster.NewLeases(jsB, log, "b", 3)
	t.Cleanup(b.Close)
	ctx := t.Context()
	var la *cluster.Lease
	// The cluster elects its JetStream leader first.
	testutil.WaitFor(t, 20*time.Second, func() (err error) {
		la, err = a.Acquire(ctx, gwName, "")
		return err
	})
	var leader string
	testutil.WaitFor(t, 10*time.Second, func() error {
		s, err := jsA.Stream(ctx, "KV_"+cluster.LeaseBucket)
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
			return fmt.Errorf("stream cluster %+v", info.Cluster)
		}
		leader = info.Cluster.Leader
		return nil
	})
	lostAt := make(chan time.Time, 1)
	go func() { <-la.Lost(); lostAt <- time.Now() }()
	killed := time.Now()
	for _, s := range srvs {
		if s.Name() == leader {
			s.Shutdown()
		}
	}
	// b tries all along; for 8 s (past the TTL and an election), or until
	// it gets the lease.
	var lb *cluster.Lease
	deadline := time.Now().Add(8 * time.Second)
	for lb == nil && time.Now().Before(deadline) {
		if l, err := b.Acquire(ctx, gwName, ""); err == nil {
			lb = l
			break
		}
		time.Sleep(50 * time.Millisecond) // polling: b tries again
	}
	select {
	case lost := <-lostAt:
		if lb == nil {
			t.Fatalf("a lost its lease %v after the leader %s was killed, and b never took it", lost.Sub(killed), leader)
		}
		t.Logf("leader %s killed; a gave its lease up after %v (%v), b took it after %v",
			leader, lost.Sub(killed).Round(time.Millisecond), la.Err(), time.Since(killed).Round(time.Millisecond))
	default:
		if lb != nil {
			t.Fatalf("b took the lease %v after the leader was killed while a still held it", time.Since(killed))
		}
		t.Logf("leader %s killed; a kept its lease through the election", leader)
		if err := la.Release(ctx); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 10*time.Second, func() (err error) {
			lb, err = b.Acquire(ctx, gwName, "")
			return err
		})
	}
	_ = lb.Release(ctx)
}
