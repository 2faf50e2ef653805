package manager

import (
	"context"
	"crypto/rand"
	"log/slog"
	"time"

	"cloud.google.com/go/iot/apiv1/iotpb"

	"github.com/passerelle-iot/passerelle/pkg/store"
)

// commandRouter delivers a command to the bridge that holds the device's
// connection (or its gateway's). It returns an error matching
// store.ErrFailedPrecondition when no connection takes the command.
type commandRouter interface {
	SendCommand(ctx context.Context, dev *store.Device, data []byte, subfolder string) error
}

// deviceManager implements google.cloud.iot.v1.DeviceManager on a store.
// Its methods return plain errors (validation errors, store errors); the
// error interceptor turns them into gRPC statuses in one place.
type deviceManager struct {
	iotpb.UnimplementedDeviceManagerServer

	logger *slog.Logger
	store  store.Store
	now    func() time.Time

	// commands routes SendCommandToDevice; nil means no device is reachable
	// and every command fails with FAILED_PRECONDITION.
	commands commandRouter
	// bus, when set, hears of config and device changes, for the bridges.
	bus Bus
	// cache, when set, serves GetDevice for devices read shortly before.
	cache *deviceCache
	// annSync, when set, confirms the cache has handled every
	// announcement the bus sent before a call (Serve sets it).
	annSync interface{ Sync(context.Context) error }

	// tokenKey signs page tokens so that a caller cannot forge a position or
	// reuse a token with other filters. Serve reads it from the store, the
	// same for every instance and across restarts; until then it is random.
	tokenKey [32]byte
}

func newDeviceManager(logger *slog.Logger, st store.Store, now func() time.Time, b Bus) *deviceManager {
	m := &deviceManager{logger: logger, store: st, now: now, bus: b}
	if b != nil {
		m.commands = busCommands{bus: b}
	}
	// crypto/rand.Read never fails on supported platforms (Go 1.24+).
	_, _ = rand.Read(m.tokenKey[:])
	return m
}
