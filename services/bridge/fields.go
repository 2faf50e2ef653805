package bridge

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/store"
)

// google.rpc codes used in lastErrorStatus.
const (
	codeInvalidArgument    = 3
	codeAlreadyExists      = 6
	codePermissionDenied   = 7
	codeResourceExhausted  = 8
	codeFailedPrecondition = 9
	codeUnavailable        = 14
	codeUnauthenticated    = 16
)

// fieldDelta is what changed in a device's server-set fields since the
// last flush. Zero values mean "unchanged".
type fieldDelta struct {
	ref         store.DeviceRef
	heartbeat   time.Time
	event       time.Time
	stateTime   time.Time
	configSend  time.Time
	errTime     time.Time
	errStatus   *store.Status
	gatewayID   string
	gatewayTime time.Time
	ackVersion  int64
	ackTime     time.Time
}

// fields batches server-set fields in memory; flush writes them with one
// UpdateDevice (and at most one AckConfig) per changed device, so a busy
// device costs one database write per flush interval, not one per message.
type fields struct {
	mu sync.Mutex
	m  map[uint64]*fieldDelta
}

func newFields() *fields { return &fields{m: make(map[uint64]*fieldDelta)} }

// touch applies f to the device's pending delta.
func (f *fields) touch(ref store.DeviceRef, f2 func(*fieldDelta)) {
	f.mu.Lock()
	d := f.m[ref.NumID]
	if d == nil {
		d = &fieldDelta{ref: ref}
		f.m[ref.NumID] = d
	}
	f2(d)
	f.mu.Unlock()
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func (f *fields) flush(ctx context.Context, st DeviceStore, timeout time.Duration, log func(msg string, args ...any)) {
	f.mu.Lock()
	batch := f.m
	f.m = make(map[uint64]*fieldDelta, len(batch))
	f.mu.Unlock()
	for _, d := range batch {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		if d.ackVersion > 0 {
			if err := st.AckConfig(cctx, d.ref, d.ackVersion, d.ackTime); err != nil && !errors.Is(err, store.ErrNotFound) {
				log("bridge: recording a config ack", "device_num_id", d.ref.NumID, "err", err)
			}
		}
		_, err := st.UpdateDevice(cctx, d.ref, func(dev *store.Device) error {
			dev.LastHeartbeatTime = later(dev.LastHeartbeatTime, d.heartbeat)
			dev.LastEventTime = later(dev.LastEventTime, d.event)
			dev.LastStateTime = later(dev.LastStateTime, d.stateTime)
			dev.LastConfigSendTime = later(dev.LastConfigSendTime, d.configSend)
			if !d.errTime.IsZero() {
				dev.LastErrorTime = later(dev.LastErrorTime, d.errTime)
				dev.LastErrorStatus = d.errStatus
			}
			if d.gatewayID != "" {
				dev.LastAccessedGatewayID = d.gatewayID
				dev.LastAccessedGatewayTime = later(dev.LastAccessedGatewayTime, d.gatewayTime)
			}
			return nil
		})
		cancel()
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			log("bridge: writing server-set device fields", "device_num_id", d.ref.NumID, "err", err)
		}
	}
}
