package bridge

import "github.com/passerelle-iot/passerelle/pkg/bus"

// Resync hands b the Resync the bus gives after announcements may have
// been lost (a slow consumer, a reconnection to NATS), which a test cannot
// cause on demand.
func Resync(b *Bridge) { b.onAnnouncement(bus.Announcement{Kind: bus.Resync}) }
