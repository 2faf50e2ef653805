package hub

import (
	"context"
	"fmt"
	"time"
)

// GatewayChecker tells whether a gateway still exists; ManagerProvisioner
// implements it over the admin API.
type GatewayChecker interface {
	// GatewayExists reports whether name, a gateway's resource name,
	// still names a gateway of its registry.
	GatewayExists(ctx context.Context, name string) (bool, error)
}

// KeyForgetter is a KeyResolver that can forget a gateway's key, as Keys
// does. The pool forgets the key of a gateway deleted from its registry.
type KeyForgetter interface {
	Forget(name string) error
}

// deletedMemory is how long the pool answers ErrGatewayDeleted for a
// gateway it dropped as deleted, and at most how many it remembers.
const (
	deletedMemory    = time.Hour
	deletedMemoryMax = 10000
)

// noteDeletedLocked remembers that name was deleted, forgetting what is
// older than deletedMemory (or the oldest, past deletedMemoryMax). p.mu is
// held.
func (p *Pool) noteDeletedLocked(name string, now time.Time) {
	if p.deleted == nil {
		p.deleted = map[string]time.Time{}
	}
	var oldest string
	for n, at := range p.deleted {
		if now.Sub(at) > deletedMemory {
			delete(p.deleted, n)
		} else if oldest == "" || at.Before(p.deleted[oldest]) {
			oldest = n
		}
	}
	if len(p.deleted) >= deletedMemoryMax {
		delete(p.deleted, oldest)
	}
	p.deleted[name] = now
}

// gatewayCheckTimeout bounds one question to the GatewayChecker; without
// an answer the gateway is connected again as if there were no checker.
const gatewayCheckTimeout = 5 * time.Second

// dropIfDeleted is called by g's run loop when the bridge lost or refused
// g's connection, before it connects again. It asks the pool's
// GatewayChecker whether the gateway still exists and, when it does not,
// drops g from the pool, forgets its key, and stops g so that every call
// on it ends with ErrGatewayDeleted. It reports whether it stopped g; the
// run loop then returns without connecting again.
func (p *Pool) dropIfDeleted(g *gw) bool {
	if p.o.gatewayCheck == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(g.ctx, gatewayCheckTimeout)
	exists, err := p.o.gatewayCheck.GatewayExists(ctx, g.name)
	cancel()
	if err != nil {
		if g.ctx.Err() == nil {
			g.log.Debug("hub: could not ask the admin API whether the gateway still exists; reconnecting", "err", err)
		}
		return false
	}
	if exists {
		return false
	}
	var forgetErr error
	p.mu.Lock()
	if p.gws[g.name] == g {
		delete(p.gws, g.name)
		p.noteDeletedLocked(g.name, time.Now())
		// Under p.mu: a Hold for the gateway finds neither the
		// connection nor the key, and fails.
		if f, ok := p.keys.(KeyForgetter); ok {
			forgetErr = f.Forget(g.name)
		}
	}
	g.mu.Lock()
	g.shutdownLocked(fmt.Errorf("%w: %s; the hub dropped its connection and forgot its key", ErrGatewayDeleted, g.name))
	g.mu.Unlock()
	p.mu.Unlock()
	if forgetErr != nil {
		g.log.Warn("hub: the gateway was deleted from its registry; dropped its connection, but could not remove its key", "err", forgetErr)
	} else {
		g.log.Info("hub: the gateway was deleted from its registry; dropped its connection and forgot its key")
	}
	return true
}
