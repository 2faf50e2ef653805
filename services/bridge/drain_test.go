package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/store"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/bridge"
)

// A bridge told to stop with a drain period reports not ready at once,
// takes no new connection, and closes its connections spread over the
// period (not all at once), recording nothing on the devices; their
// presence records are released, so that they reconnect elsewhere at
// once.
func TestDrainShedsOverThePeriod(t *testing.T) {
	keys(t)
	ce := newClusterEnv(t)
	const n, period = 20, 2 * time.Second
	a := ce.addBridge("a", "", bridge.WithDrain(period))
	var devs []*store.Device
	var clients []*client
	for i := range n {
		id := "drain-" + strconv.Itoa(i)
		devs = append(devs, a.createDevice(id, ecKey, nil))
		clients = append(clients, a.connect(id, ecKey))
	}
	settled(t, a)

	var mu sync.Mutex
	var lostAt []time.Time
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-c.lost:
				mu.Lock()
				lostAt = append(lostAt, time.Now())
				mu.Unlock()
			case <-time.After(30 * time.Second):
			}
		}()
	}

	start := time.Now()
	stopped := make(chan struct{})
	go func() { a.stop(); close(stopped) }()
	testutil.WaitFor(t, 5*time.Second, func() error {
		if a.br.Ready(context.Background()) == nil {
			return errors.New("still ready after the stop began")
		}
		return nil
	})
	if err := a.br.Ready(context.Background()); err != nil {
		t.Logf("while draining: %v", err)
	}
	// No new connection: the listener is closed.
	testutil.WaitFor(t, 5*time.Second, func() error {
		c, err := a.dial(clientID("drain-0"), ecKey.jwt(t))
		if err == nil {
			c.Disconnect(0)
			return errors.New("a new connection was taken while draining")
		}
		return nil
	})
	// The connection count goes down in steps, not at once.
	seen := map[int]bool{}
	for done := false; !done; {
		select {
		case <-stopped:
			done = true
		default:
			seen[a.br.Connections()] = true
			time.Sleep(5 * time.Millisecond)
		}
	}
	took := time.Since(start)
	wg.Wait()
	if len(lostAt) != n {
		t.Fatalf("%d of %d connections closed by the drain", len(lostAt), n)
	}
	if len(seen) < 4 {
		t.Errorf("the drain went through %d connection counts (%v): it shed them all at once", len(seen), seen)
	}
	first, last := lostAt[0], lostAt[0]
	for _, at := range lostAt {
		first, last = minTime(first, at), maxTime(last, at)
	}
	t.Logf("drained %d connections over %s: first closed after %s, last after %s; %d counts seen",
		n, took.Round(time.Millisecond), first.Sub(start).Round(time.Millisecond), last.Sub(start).Round(time.Millisecond), len(seen))
	for _, d := range devs {
		if got := a.device(d.ID); got.LastErrorStatus != nil {
			t.Errorf("%s: lastErrorStatus %+v after a drain", d.ID, got.LastErrorStatus)
		}
		rec, ok, err := a.presence.Holder(context.Background(), fmt.Sprint(d.NumID))
		if err != nil || !ok || !rec.Released {
			t.Errorf("%s: presence %+v %v %v after the drain, want released", d.ID, rec, ok, err)
		}
	}
}

// Devices drained from one bridge reconnect to another and stay there.
func TestDrainToAnotherBridge(t *testing.T) {
	keys(t)
	ce := newClusterEnv(t)
	a := ce.addBridge("a", "", bridge.WithDrain(500*time.Millisecond))
	b := ce.addBridge("b", "")
	var devs []*store.Device
	var onA []*client
	for i := range 10 {
		id := "move-" + strconv.Itoa(i)
		devs = append(devs, a.createDevice(id, ecKey, nil))
		onA = append(onA, a.connect(id, ecKey))
	}
	go a.stop()
	var onB []*client
	for i, d := range devs {
		lostWithin(t, onA[i], 10*time.Second)
		onB = append(onB, b.connect(d.ID, ecKey))
	}
	settled(t, b)
	for i, d := range devs {
		b.holds(d)
		stillUp(t, onB[i], d.ID)
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
