package bridge

import (
	"time"

	"github.com/passerelle-iot/passerelle/pkg/bus"
)

// Resync hands b the Resync the bus gives after announcements may have
// been lost (a slow consumer, a reconnection to NATS), which a test cannot
// cause on demand.
func Resync(b *Bridge) { b.onAnnouncement(bus.Announcement{Kind: bus.Resync}) }

// ConfigWaits returns the getConfig requests waiting for a newer config.
func (b *Bridge) ConfigWaits() int {
	b.cfgWaits.mu.Lock()
	defer b.cfgWaits.mu.Unlock()
	n := 0
	for _, set := range b.cfgWaits.m {
		n += len(set)
	}
	return n
}

// WithParkAfter sets how long a connection is silent before the parker
// takes it (0: never), so that tests park connections within
// milliseconds.
func WithParkAfter(d time.Duration) Option { return func(o *options) { o.parkAfter = d } }

// Parked returns the connections the bridge's parkers hold.
func (b *Bridge) Parked() int { return b.parked() }
