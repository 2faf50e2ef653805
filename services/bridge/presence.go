package bridge

import (
	"context"
	"log/slog"
	"time"
)

// Presence keeps one connection per device across the bridges of a
// cluster; pkg/cluster's *Presence provides it (WithPresence).
//
// Claim records that this bridge holds a connection of the client key
// (the connecting device's or gateway's numId), made at at, and returns
// the function that ends the claim. lost is called when a newer
// connection of the same client exists on any bridge. Ready reports
// whether claims are being recorded.
type Presence interface {
	Claim(key string, at time.Time, lost func()) (release func(), err error)
	Ready(ctx context.Context) error
}

// errTakenOver is the lastErrorStatus message of a connection closed for
// a newer one of the same device, on this bridge or another (compat-spec
// section 6: code ALREADY_EXISTS).
const errTakenOver = "another active connection with the same device id"

// claimPresenceLocked records the connection cluster-wide, once it is
// established. Only the connecting client claims: a device attached
// through a gateway is not a connection of its own, so, as on one bridge,
// a device may be held directly and through gateways at once, on any
// bridges. Called with c.mu held.
func (c *conn) claimPresenceLocked(at time.Time) {
	p := c.b.opts.presence
	if p == nil {
		return
	}
	release, err := p.Claim(numIDString(c.self.ref.NumID), at, c.presenceLost)
	if err != nil {
		c.b.log.Debug("bridge: not recorded cluster-wide", append(c.logAttrs(), "err", err)...)
		return
	}
	c.release = release
}

// presenceLost runs on a goroutine of the Presence, which it must not hold
// up: the close goes to the pool.
func (c *conn) presenceLost() {
	c.b.goWork(func() { c.closeAt(slog.LevelDebug, codeAlreadyExists, errTakenOver) })
}
