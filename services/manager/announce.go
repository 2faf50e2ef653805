package manager

import (
	"context"
	"errors"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/store"
)

// Bus is what the manager needs of the bus (pkg/bus): telling bridges that a
// device changed, and handing a command to the bridge that holds a device.
type Bus interface {
	Announce(ctx context.Context, a bus.Announcement) error
	SubscribeAnnouncements(handler func(bus.Announcement)) (stop func(), err error)
	SendCommand(ctx context.Context, numID uint64, cmd bus.Command) error
}

// announceTimeout bounds an announcement made after a write succeeded: the
// write stands whatever happens to the announcement (bridges re-read the
// store when they miss one), so the caller must not wait long for it.
const announceTimeout = 2 * time.Second

// maxAnnouncedConfigBytes bounds the config an announcement carries: every
// bridge and manager hears every announcement, so a large config is left
// for the bridge holding the device to read from the store.
const maxAnnouncedConfigBytes = 4 << 10

// announce tells bridges that device changed; cfg is the config a
// ConfigChanged carries. The write it follows has succeeded, so a failure
// is logged, not returned.
func (m *deviceManager) announce(ctx context.Context, kind bus.AnnouncementKind, device store.DeviceRef, cfg *bus.AnnouncedConfig) {
	if m.bus == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), announceTimeout)
	defer cancel()
	a := bus.Announcement{
		Kind:     kind,
		Project:  device.Registry.Project,
		Location: device.Registry.Location,
		Registry: device.Registry.ID,
		DeviceID: device.ID,
		NumID:    device.NumID,
		Config:   cfg,
	}
	err := m.bus.Announce(ctx, a)
	if err != nil && a.Config != nil {
		// Too large for the NATS server's max_payload, say: the bridge
		// reads the config from the store instead.
		a.Config = nil
		err = m.bus.Announce(ctx, a)
	}
	if err != nil {
		m.logger.Warn("announce a device change to the bridges", "kind", kind, "device", device.ID, "num_id", device.NumID, "err", err)
	}
}

// announceRegistry tells bridges (and other manager instances) that a
// registry changed or was deleted, so that they drop what they cached of
// it and apply it again to live connections. As with announce, the write
// has succeeded: a failure is logged, and bridges fall back on their
// registry cache's expiry.
func (m *deviceManager) announceRegistry(ctx context.Context, kind bus.AnnouncementKind, key store.RegistryKey) {
	if m.bus == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), announceTimeout)
	defer cancel()
	a := bus.Announcement{Kind: kind, Project: key.Project, Location: key.Location, Registry: key.ID}
	if err := m.bus.Announce(ctx, a); err != nil {
		m.logger.Warn("announce a registry change to the bridges", "kind", kind, "registry", a.RegistryName(), "err", err)
	}
}

// forgetAnnounced drops from the cache a device another manager instance
// changed (and this one's own, already dropped).
func (m *deviceManager) forgetAnnounced(a bus.Announcement) {
	if a.Kind == bus.Resync {
		m.cache.invalidateAll()
		return
	}
	if a.Kind.IsRegistry() {
		// The cache holds devices only, and no device field comes from
		// its registry; GetDeviceRegistry reads the store.
		return
	}
	reg := store.RegistryKey{Project: a.Project, Location: a.Location, ID: a.Registry}
	m.cache.invalidate(reg, a.DeviceID, a.NumID)
}

// busCommands routes commands through the bus to the bridge holding the
// device.
type busCommands struct{ bus Bus }

func (c busCommands) SendCommand(ctx context.Context, dev *store.Device, data []byte, subfolder string) error {
	err := c.bus.SendCommand(ctx, dev.NumID, bus.Command{Data: data, SubFolder: subfolder})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, bus.ErrNotConnected):
		return store.Errorf(store.ErrFailedPrecondition,
			"Device '%s' is not connected, or not subscribed to /devices/%s/commands/#", dev.ID, dev.ID)
	case errors.Is(err, bus.ErrCommandFailed):
		return store.Errorf(store.ErrFailedPrecondition, "The command could not be delivered to device '%s': %v", dev.ID, err)
	}
	return err
}
