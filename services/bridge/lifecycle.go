package bridge

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// The bridge's phases, in order (Bridge.phase).
const (
	phaseNew      int32 = iota // before Serve listens
	phaseServing               // serving
	phaseDraining              // Serve's context ended: shedding connections
	phaseStopped               // stopping or stopped
)

// errDraining ends the connections a drain sheds, and refuses a CONNECT
// that completes during the drain.
var errDraining = errors.New("the bridge is shutting down: connect to another one")

// Ready reports whether the bridge should be sent new connections (a load
// balancer's readiness probe): an error before Serve listens, once it is
// draining or stopping, and while the cluster's presence (WithPresence)
// cannot record connections (without presence: while its connection to
// NATS is down). The store's and the bus's own health are separate checks
// of the operator address. Live connections are kept in all of these
// cases but the drain.
func (b *Bridge) Ready(ctx context.Context) error {
	switch b.phase.Load() {
	case phaseNew:
		return errors.New("bridge: not serving yet")
	case phaseDraining:
		return errors.New("bridge: draining")
	case phaseStopped:
		return errors.New("bridge: stopped")
	}
	// The store and the bus have readiness checks of their own (ops'
	// "database" and "nats"); what is the bridge's is whether it can keep
	// one connection per device, which needs presence.
	if p := b.opts.presence; p != nil {
		if err := p.Ready(ctx); err != nil {
			return fmt.Errorf("bridge: %w", err)
		}
	} else if b.bus != nil && !b.bus.Conn().IsConnected() {
		return fmt.Errorf("bridge: not connected to NATS (%s)", b.bus.Conn().Status())
	}
	return nil
}

// drainTick bounds how often the drain closes a batch of connections.
const drainTick = 10 * time.Millisecond

// drain sheds the live connections evenly over the drain period, in a
// random order: connection i (of n) is closed once (i+1)/n of the period
// has passed. The listeners stop accepting first, and the connections
// still authenticating are closed: their devices try again elsewhere.
func (b *Bridge) drain(ls []*listener) {
	b.phase.Store(phaseDraining)
	for _, l := range ls {
		l.stopAccepting()
	}
	conns := b.allConns()
	rand.Shuffle(len(conns), func(i, j int) { conns[i], conns[j] = conns[j], conns[i] })
	d := b.opts.drain
	b.log.Info("bridge: draining", "connections", len(conns), "over", d)
	start := time.Now()
	t := time.NewTicker(max(d/time.Duration(max(len(conns), 1)), drainTick))
	defer t.Stop()
	shed := 0
	for shed < len(conns) {
		<-t.C
		elapsed := time.Since(start)
		due := len(conns)
		if elapsed < d {
			due = int(int64(len(conns)) * int64(elapsed) / int64(d))
		}
		for ; shed < due; shed++ {
			conns[shed].shed()
		}
	}
	b.log.Info("bridge: drained", "connections", len(conns), "took", time.Since(start).Round(time.Millisecond))
}
