package cluster_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/passerelle-iot/passerelle/pkg/cluster"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

// leaseServer starts a NATS server with JetStream on a free port for the
// test and returns its URL.
func leaseServer(t *testing.T) string {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS did not start")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv.ClientURL()
}

// leaseConn is one instance's own connection, closed at the test's end.
func leaseConn(t *testing.T, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, testutil.Must(jetstream.New(nc))
}

func newLeases(t *testing.T, url, instance string) (*nats.Conn, *cluster.Leases) {
	t.Helper()
	nc, js := leaseConn(t, url)
	l := cluster.NewLeases(js, testutil.Logger(t), instance, 1)
	t.Cleanup(l.Close)
	return nc, l
}

const gwName = "projects/p1/locations/us-central1/registries/r.1/devices/gw~1"

// TestLeaseIsExclusive: while a holds the lease, b's Acquire fails naming
// a; once a releases it, b takes it at once.
func TestLeaseIsExclusive(t *testing.T) {
	t.Parallel()
	url := leaseServer(t)
	_, a := newLeases(t, url, "a")
	_, b := newLeases(t, url, "b")
	ctx := t.Context()
	la, err := a.Acquire(ctx, gwName, "10.0.0.1:8090")
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Acquire(ctx, gwName, "10.0.0.2:8090")
	var held *cluster.HeldError
	if !errors.As(err, &held) || !errors.Is(err, cluster.ErrHeld) || held.Holder != (cluster.Holding{Instance: "a", Addr: "10.0.0.1:8090"}) {
		t.Fatalf("b's Acquire while a holds it: %v", err)
	}
	// A second Acquire by the holder itself fails too: one Lease per name.
	if _, err := a.Acquire(ctx, gwName, "10.0.0.1:8090"); !errors.Is(err, cluster.ErrHeld) {
		t.Fatalf("a's second Acquire: %v", err)
	}
	if h, ok, err := b.Get(ctx, gwName); err != nil || !ok || h.Instance != "a" {
		t.Fatalf("Get: %v %v %v", h, ok, err)
	}
	if err := la.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-la.Lost():
	default:
		t.Fatal("a released lease is not lost")
	}
	lb, err := b.Acquire(ctx, gwName, "10.0.0.2:8090")
	if err != nil {
		t.Fatalf("b's Acquire after the release: %v", err)
	}
	if err := lb.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := a.Get(ctx, gwName); err != nil || ok {
		t.Fatalf("Get after the releases: %v %v", ok, err)
	}
}

// TestLeaseHolderCutOffGivesUpFirst: a holder cut off from NATS (its
// connection closed: it can refresh nothing) gives its lease up before
// anyone else can take it. b tries to take the lease all along; the moment
// it succeeds is after the moment a's lease said Lost.
func TestLeaseHolderCutOffGivesUpFirst(t *testing.T) {
	t.Parallel()
	url := leaseServer(t)
	ncA, a := newLeases(t, url, "a")
	_, b := newLeases(t, url, "b")
	ctx := t.Context()
	la := testutil.Must(a.Acquire(ctx, gwName, ""))
	// Refreshes go on past the TTL while connected.
	time.Sleep(cluster.DefaultLeaseTTL + time.Second)
	select {
	case <-la.Lost():
		t.Fatalf("the lease was lost while refreshed: %v", la.Err())
	default:
	}
	if _, err := b.Acquire(ctx, gwName, ""); !errors.Is(err, cluster.ErrHeld) {
		t.Fatalf("b took a refreshed lease: %v", err)
	}

	cut := time.Now()
	ncA.Close()
	lostAt := make(chan time.Time, 1)
	go func() { <-la.Lost(); lostAt <- time.Now() }()
	var lb *cluster.Lease
	testutil.WaitFor(t, 3*cluster.DefaultLeaseTTL, func() (err error) {
		lb, err = b.Acquire(ctx, gwName, "")
		return err
	})
	acquired := time.Now()
	defer func() { _ = lb.Release(ctx) }()
	var lost time.Time
	select {
	case lost = <-lostAt:
	default:
		t.Fatal("b took the lease while a still held it")
	}
	if !lost.Before(acquired) {
		t.Fatalf("a gave the lease up at %v, after b took it at %v", lost.Sub(cut), acquired.Sub(cut))
	}
	t.Logf("cut at 0; a gave up at %v; b took it at %v (margin %v)", lost.Sub(cut).Round(time.Millisecond),
		acquired.Sub(cut).Round(time.Millisecond), acquired.Sub(lost).Round(time.Millisecond))
	if !errors.Is(la.Err(), cluster.ErrLeaseLost) {
		t.Errorf("a's lease error %v", la.Err())
	}
}

// TestLeaseOverwrittenIsLost: a lease whose key someone else wrote is lost
// at the next refresh, with the new holder named.
func TestLeaseOverwrittenIsLost(t *testing.T) {
	t.Parallel()
	url := leaseServer(t)
	_, a := newLeases(t, url, "a")
	_, js := leaseConn(t, url)
	ctx := t.Context()
	la := testutil.Must(a.Acquire(ctx, gwName, ""))
	kv := testutil.Must(js.KeyValue(ctx, cluster.LeaseBucket))
	keys := testutil.Must(kv.ListKeys(ctx))
	var key string
	for k := range keys.Keys() {
		key = k
	}
	if key == "" {
		t.Fatal("no key in the bucket")
	}
	testutil.Must(kv.Put(ctx, key, []byte(`{"instance":"intruder"}`)))
	select {
	case <-la.Lost():
	case <-time.After(3 * cluster.DefaultLeaseTTL):
		t.Fatal("the lease is still held")
	}
	if err := la.Err(); !errors.Is(err, cluster.ErrLeaseLost) || !strings.Contains(err.Error(), "intruder") {
		t.Fatalf("lost with %v", err)
	}
	// Release after a loss deletes nothing of the intruder's.
	if err := la.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if h, ok, _ := a.Get(ctx, gwName); !ok || h.Instance != "intruder" {
		t.Fatalf("after Release: %v %v", h, ok)
	}
}

// TestLeaseView: the view follows acquires, releases and lapses.
func TestLeaseView(t *testing.T) {
	t.Parallel()
	url := leaseServer(t)
	ncA, a := newLeases(t, url, "a")
	_, b := newLeases(t, url, "b")
	ctx := t.Context()
	v := b.View()
	holder := func(want string) func() error {
		return func() error {
			h, held, synced := v.Holder(gwName)
			switch {
			case !synced:
				return errors.New("not synced")
			case want == "" && held:
				return fmt.Errorf("held by %s", h.Instance)
			case want != "" && h.Instance != want:
				return fmt.Errorf("held by %q, want %q", h.Instance, want)
			}
			return nil
		}
	}
	testutil.WaitFor(t, 5*time.Second, holder(""))
	changed := v.Changed()
	la := testutil.Must(a.Acquire(ctx, gwName, "x"))
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("no change after the acquire")
	}
	testutil.WaitFor(t, 5*time.Second, holder("a"))
	if err := la.Release(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, holder(""))

	testutil.Must(a.Acquire(ctx, "other", "x"))
	testutil.WaitFor(t, 5*time.Second, func() error {
		if _, held, _ := v.Holder("other"); !held {
			return errors.New("not held")
		}
		return nil
	})
	ncA.Close() // the lease lapses on the server: the view sees its marker
	testutil.WaitFor(t, 3*cluster.DefaultLeaseTTL, func() error {
		if _, held, _ := v.Holder("other"); held {
			return errors.New("still held")
		}
		return nil
	})
}
