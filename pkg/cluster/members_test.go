package cluster_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

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
