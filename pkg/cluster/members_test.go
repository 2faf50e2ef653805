package cluster_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/passerelle-iot/passerelle/pkg/cluster"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

// liveIs polls m's view until it lists want ("instance" or
// "instance:draining"), in order.
func liveIs(t *testing.T, m *cluster.Members, want ...string) {
	t.Helper()
	testutil.WaitFor(t, 3*cluster.DefaultLeaseTTL, func() error {
		var got []string
		for _, lm := range m.Live() {
			s := lm.Instance
			if lm.Draining {
				s += ":draining"
			}
			if lm.Since.IsZero() {
				return fmt.Errorf("%s has no Since", lm.Instance)
			}
			got = append(got, s)
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			return fmt.Errorf("live %v, want %v", got, want)
		}
		return nil
	})
}

// TestMembers: members see each other join, drain, leave, and lapse when
// cut off from NATS; a member cut off says so in Err.
func TestMembers(t *testing.T) {
	t.Parallel()
	url := leaseServer(t)
	_, jsA := leaseConn(t, url)
	ncB, jsB := leaseConn(t, url)
	_, jsC := leaseConn(t, url)
	log := testutil.Logger(t)
	a := cluster.NewMembers(jsA, log, "a", 1)
	b := cluster.NewMembers(jsB, log, "b", 1)
	c := cluster.NewMembers(jsC, log, "c", 1)
	t.Cleanup(a.Close)
	t.Cleanup(b.Close)
	t.Cleanup(c.Close)
	if a.Err() == nil {
		t.Error("Err is nil before Join")
	}
	a.Join("10.0.0.1:8090")
	b.Join("10.0.0.2:8090")
	c.Join("10.0.0.3:8090")
	liveIs(t, a, "a", "b", "c")
	testutil.WaitFor(t, 5*time.Second, a.Err)
	if lm := a.Live()[1]; lm.Addr != "10.0.0.2:8090" {
		t.Errorf("b's address %q", lm.Addr)
	}

	changed := a.Changed()
	if err := c.SetDraining(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("no change after c drains")
	}
	liveIs(t, a, "a", "b", "c:draining")
	// The heartbeat keeps the flag.
	time.Sleep(cluster.DefaultLeaseTTL / 2)
	liveIs(t, a, "a", "b", "c:draining")

	if err := c.Leave(t.Context()); err != nil {
		t.Fatal(err)
	}
	liveIs(t, a, "a", "b")

	ncB.Close()
	liveIs(t, a, "a")
	testutil.WaitFor(t, 3*cluster.DefaultLeaseTTL, func() error {
		if b.Err() == nil {
			return fmt.Errorf("b cut off from NATS says nothing")
		}
		return nil
	})
}

// TestMembersAfterNATSRestart: the members bucket lives in memory; after
// its NATS server restarts it is gone, and the members make it again and
// see each other again, and a member that joins after.
func TestMembersAfterNATSRestart(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := lis.Addr().(*net.TCPAddr).Port
	lis.Close()
	opts := &server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true}
	start := func() *server.Server {
		var srv *server.Server
		testutil.WaitFor(t, 10*time.Second, func() (err error) {
			if srv, err = server.NewServer(opts); err != nil {
				return err
			}
			srv.Start()
			if !srv.ReadyForConnections(2 * time.Second) {
				srv.Shutdown()
				return fmt.Errorf("NATS did not start")
			}
			return nil
		})
		return srv
	}
	srv := start()
	url := srv.ClientURL()
	log := testutil.Logger(t)
	var ms []*cluster.Members
	for _, name := range []string{"a", "b"} {
		_, js := leaseConn(t, url)
		m := cluster.NewMembers(js, log, name, 1)
		t.Cleanup(m.Close)
		m.Join("")
		ms = append(ms, m)
	}
	liveIs(t, ms[0], "a", "b")
	srv.Shutdown()
	srv.WaitForShutdown()
	srv = start()
	defer srv.Shutdown()
	// Only a watch that works again sees a member that joins now.
	_, js := leaseConn(t, url)
	c := cluster.NewMembers(js, log, "c", 1)
	t.Cleanup(c.Close)
	c.Join("")
	for _, m := range ms {
		liveIs(t, m, "a", "b", "c")
		testutil.WaitFor(t, 10*time.Second, m.Err)
	}
}
