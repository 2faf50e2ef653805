package cluster_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/passerelle-iot/passerelle/pkg/cluster"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/pkg/testutil/natstest"
)

// node is one process of the cluster: its own NATS connection and
// Presence.
type node struct {
	t  *testing.T
	nc *nats.Conn
	p  *cluster.Presence
}

func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.ReconnectJitter(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func newNode(t *testing.T, url, instance string, replicas int, opts ...cluster.PresenceOption) *node {
	t.Helper()
	nc := connect(t, url)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	p, err := cluster.NewPresence(t.Context(), testutil.Logger(t), js, instance, replicas,
		append([]cluster.PresenceOption{cluster.WithPresenceProbe(100*time.Millisecond, 50*time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return &node{t: t, nc: nc, p: p}
}

// conn is a connection a node holds.
type conn struct {
	key     string
	at      time.Time
	release func()
	lost    atomic.Bool
}

func (n *node) claim(key string, at time.Time) *conn {
	n.t.Helper()
	c := &conn{key: key, at: at}
	release, err := n.p.Claim(key, at, func() {
		if c.lost.Swap(true) {
			n.t.Errorf("lost called twice for %s", key)
		}
	})
	if err != nil {
		n.t.Fatal(err)
	}
	c.release = release
	return c
}

// waitHolder waits until the bucket names instance as the live holder of
// key.
func (n *node) waitHolder(key, instance string) {
	n.t.Helper()
	testutil.WaitFor(n.t, 10*time.Second, func() error {
		rec, ok, err := n.p.Holder(context.Background(), key)
		if err != nil || !ok || rec.Instance != instance || rec.Released {
			return fmt.Errorf("holder of %s: %+v %v %v, want %s", key, rec, ok, err, instance)
		}
		return nil
	})
}

func waitLost(t *testing.T, c *conn) {
	t.Helper()
	waitLostWithin(t, c, 10*time.Second)
}

func waitLostWithin(t *testing.T, c *conn, d time.Duration) {
	t.Helper()
	testutil.WaitFor(t, d, func() error {
		if !c.lost.Load() {
			return fmt.Errorf("connection of %s not closed", c.key)
		}
		return nil
	})
}

// settled waits until both nodes wrote what they hold.
func settled(t *testing.T, nodes ...*node) {
	t.Helper()
	testutil.WaitFor(t, 10*time.Second, func() error {
		for _, n := range nodes {
			if p := n.p.Pending(); p > 0 {
				return fmt.Errorf("%s has %d clients to write", n.p.Instance(), p)
			}
		}
		return nil
	})
}

func TestInstanceID(t *testing.T) {
	a, b := cluster.NewInstanceID(), cluster.NewInstanceID()
	if a == b {
		t.Errorf("two instance ids are both %q", a)
	}
	for _, id := range []string{a, b} {
		if err := cluster.CheckInstanceID(id); err != nil {
			t.Errorf("NewInstanceID gave %q: %v", id, err)
		}
	}
	for _, bad := range []string{"", "a b", "é", "a*", string(make([]byte, cluster.MaxInstanceIDLen+1))} {
		if err := cluster.CheckInstanceID(bad); err == nil {
			t.Errorf("CheckInstanceID(%q) accepted it", bad)
		}
	}
}

// A newer connection elsewhere closes the older one; the newer one stays.
func TestPresenceNewerConnectionWins(t *testing.T) {
	url := natstest.Server(t).ClientURL()
	a, b := newNode(t, url, "a", 1), newNode(t, url, "b", 1)
	t0 := time.Now()
	ca := a.claim("1001", t0)
	a.waitHolder("1001", "a")
	cb := b.claim("1001", t0.Add(time.Millisecond))
	waitLost(t, ca)
	b.waitHolder("1001", "b")
	settled(t, a, b)
	if cb.lost.Load() {
		t.Error("the newer connection was closed")
	}
}

// A claim that reaches the bucket after a newer one (a bridge behind on
// its writes) loses: arrival order says nothing.
func TestPresenceLateOlderClaimYields(t *testing.T) {
	url := natstest.Server(t).ClientURL()
	a, b := newNode(t, url, "a", 1), newNode(t, url, "b", 1)
	t0 := time.Now()
	ca := a.claim("1001", t0)
	a.waitHolder("1001", "a")
	cb := b.claim("1001", t0.Add(-time.Second))
	waitLost(t, cb)
	settled(t, a, b)
	a.waitHolder("1001", "a")
	if ca.lost.Load() {
		t.Error("the newer connection was closed by an older one written later")
	}
}

// Connects of many clients racing on two nodes: exactly one connection
// of each survives, the newer.
func TestPresenceRace(t *testing.T) {
	url := natstest.Server(t).ClientURL()
	a, b := newNode(t, url, "a", 1), newNode(t, url, "b", 1)
	const n = 200
	t0 := time.Now()
	type pair struct{ a, b *conn }
	pairs := make([]pair, n)
	var wg sync.WaitGroup
	for i := range n {
		key := strconv.Itoa(2000 + i)
		// Random order of arrival, random winner.
		ta, tb := t0.Add(time.Duration(rand.IntN(1000))*time.Microsecond), t0.Add(time.Duration(rand.IntN(1000))*time.Microsecond)
		if ta.Equal(tb) {
			tb = tb.Add(time.Nanosecond)
		}
		wg.Add(2)
		go func() { defer wg.Done(); pairs[i].a = a.claim(key, ta) }()
		go func() { defer wg.Done(); pairs[i].b = b.claim(key, tb) }()
	}
	wg.Wait()
	testutil.WaitFor(t, 20*time.Second, func() error {
		for i, p := range pairs {
			if p.a.lost.Load() == p.b.lost.Load() {
				return fmt.Errorf("client %d: a lost %v, b lost %v", i, p.a.lost.Load(), p.b.lost.Load())
			}
		}
		return nil
	})
	settled(t, a, b)
	for i, p := range pairs {
		newerA := p.a.at.After(p.b.at)
		if p.a.lost.Load() == newerA {
			t.Errorf("client %d: a at %v lost %v, b at %v lost %v: the older survived", i, p.a.at, p.a.lost.Load(), p.b.at, p.b.lost.Load())
		}
		want := "b"
		if newerA {
			want = "a"
		}
		a.waitHolder(p.a.key, want)
	}
}

// Two connections of one client on the same node: the older yields.
func TestPresenceSameNodeTakeover(t *testing.T) {
	url := natstest.Server(t).ClientURL()
	a := newNode(t, url, "a", 1)
	t0 := time.Now()
	c1 := a.claim("7", t0)
	c2 := a.claim("7", t0.Add(time.Millisecond))
	waitLost(t, c1)
	settled(t, a)
	if c2.lost.Load() {
		t.Error("the newer connection was closed")
	}
	c1.release() // after lost: nothing happens
	a.waitHolder("7", "a")
}

// A released connection leaves a released record, which does not stand
// in the way of any later connection, even one stamped earlier (another
// node's clock).
func TestPresenceRelease(t *testing.T) {
	url := natstest.Server(t).ClientURL()
	a, b := newNode(t, url, "a", 1), newNode(t, url, "b", 1)
	t0 := time.Now()
	ca := a.claim("42", t0)
	a.waitHolder("42", "a")
	ca.release()
	ca.release()
	testutil.WaitFor(t, 10*time.Second, func() error {
		rec, ok, err := a.p.Holder(context.Background(), "42")
		if err != nil || !ok || !rec.Released {
			return fmt.Errorf("after release: %+v %v %v", rec, ok, err)
		}
		return nil
	})
	cb := b.claim("42", t0.Add(-time.Second))
	b.waitHolder("42", "b")
	settled(t, a, b)
	if cb.lost.Load() || ca.lost.Load() {
		t.Errorf("lost: a %v, b %v", ca.lost.Load(), cb.lost.Load())
	}
}

// A node that dies (its NATS connection closed, nothing released) leaves
// records that never close a later connection elsewhere.
func TestPresenceDeadNode(t *testing.T) {
	url := natstest.Server(t).ClientURL()
	a, b := newNode(t, url, "a", 1), newNode(t, url, "b", 1)
	t0 := time.Now()
	var held []*conn
	for i := range 20 {
		held = append(held, a.claim(strconv.Itoa(100+i), t0))
	}
	settled(t, a)
	a.nc.Close() // no release reaches the bucket
	for _, c := range held {
		c.release()
	}
	var fresh []*conn
	for i := range 20 {
		fresh = append(fresh, b.claim(strconv.Itoa(100+i), time.Now()))
	}
	settled(t, b)
	for _, c := range fresh {
		b.waitHolder(c.key, "b")
		if c.lost.Load() {
			t.Errorf("%s: the connection after a dead node's was closed", c.key)
		}
	}
}

// A node cut from NATS keeps its connections; connections made on both
// sides meanwhile end, the newer kept, within moments of the heal.
func TestPresenceSplitHeals(t *testing.T) {
	srv := natstest.Server(t)
	proxy := natstest.NewProxy(t, srv.Addr().String())
	a, b := newNode(t, proxy.URL(), "a", 1), newNode(t, srv.ClientURL(), "b", 1)
	t0 := time.Now()
	before := a.claim("1", t0) // held by a before the split
	a.waitHolder("1", "a")

	proxy.Cut()
	testutil.WaitFor(t, 10*time.Second, func() error {
		if a.p.Ready(context.Background()) == nil {
			return fmt.Errorf("a still ready while cut from NATS")
		}
		return nil
	})
	// During the split: "1" connects on b (newer); "2" connects on a then
	// on b; "3" on b then on a. Neither side sees the other.
	afterB1 := b.claim("1", time.Now())
	a2 := a.claim("2", time.Now())
	b2 := b.claim("2", time.Now().Add(time.Millisecond))
	b3 := b.claim("3", time.Now())
	a3 := a.claim("3", time.Now().Add(time.Millisecond))
	settled(t, b)
	if before.lost.Load() || a2.lost.Load() || a3.lost.Load() {
		t.Fatal("a closed a connection while it could not know of b's")
	}

	healed := time.Now()
	proxy.Restore()
	testutil.WaitFor(t, 10*time.Second, func() error {
		if !before.lost.Load() || !a2.lost.Load() || !b3.lost.Load() {
			return fmt.Errorf("after the heal: 1 on a lost %v, 2 on a lost %v, 3 on b lost %v",
				before.lost.Load(), a2.lost.Load(), b3.lost.Load())
		}
		return nil
	})
	t.Logf("double connections ended %s after the heal", time.Since(healed).Round(time.Millisecond))
	settled(t, a, b)
	if afterB1.lost.Load() || b2.lost.Load() || a3.lost.Load() {
		t.Errorf("a newer connection was closed: 1 on b %v, 2 on b %v, 3 on a %v", afterB1.lost.Load(), b2.lost.Load(), a3.lost.Load())
	}
	a.waitHolder("3", "a")
	b.waitHolder("2", "b")
	if err := a.p.Ready(context.Background()); err != nil {
		t.Errorf("a not ready after the heal: %v", err)
	}
}

// Close writes the releases of the connections closed before it.
func TestPresenceCloseWritesReleases(t *testing.T) {
	url := natstest.Server(t).ClientURL()
	a := newNode(t, url, "a", 1)
	var held []*conn
	for i := range 50 {
		held = append(held, a.claim(strconv.Itoa(500+i), time.Now()))
	}
	settled(t, a)
	for _, c := range held {
		c.release()
	}
	if err := a.p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.p.Claim("1", time.Now(), nil); err == nil {
		t.Error("Claim after Close did not fail")
	}
	if a.p.Ready(context.Background()) == nil {
		t.Error("ready after Close")
	}
	b := newNode(t, url, "b", 1)
	for _, c := range held {
		rec, ok, err := b.p.Holder(context.Background(), c.key)
		if err != nil || !ok || !rec.Released {
			t.Fatalf("%s after Close: %+v %v %v, want released", c.key, rec, ok, err)
		}
	}
}

// On a three-server NATS cluster with a replicated bucket, nodes on
// different servers keep one connection per client, also once a server
// is gone.
func TestPresenceOnNATSCluster(t *testing.T) {
	servers := natstest.Cluster(t, 3)
	a := newNode(t, natstest.URLs(servers[0], servers[1]), "a", 3)
	b := newNode(t, natstest.URLs(servers[2], servers[1]), "b", 3)
	ca := a.claim("9", time.Now())
	a.waitHolder("9", "a")
	cb := b.claim("9", time.Now())
	waitLost(t, ca)
	b.waitHolder("9", "b")

	// a's server goes: a moves to another. JetStream answers again once
	// the servers left elect the leaders the dead one held (NATS's raft
	// elections take seconds).
	gone := time.Now()
	servers[0].Shutdown()
	servers[0].WaitForShutdown()
	ca2 := a.claim("9", time.Now())
	waitLostWithin(t, cb, 60*time.Second)
	t.Logf("the older connection ended %s after its NATS server went", time.Since(gone).Round(time.Millisecond))
	a.waitHolder("9", "a")
	settled(t, a, b)
	if ca2.lost.Load() {
		t.Error("the newest connection was closed")
	}
}
