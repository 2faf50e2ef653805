package bridge

import (
	"context"
	"sync"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/store"
)

// google.rpc codes used in lastErrorStatus.
const (
	codeInvalidArgument    = 3
	codeNotFound           = 5
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

// fields batches server-set fields and config acknowledgements in memory;
// flush writes them for every changed device with one RecordActivity
// transaction, so a busy device costs nothing per message and a busy
// bridge one transaction per flush interval.
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

// flushChunk bounds the devices written in one transaction: on SQLite a
// transaction holds the database's one write lock, and 50 devices keep
// that to a few milliseconds, so the admin API's writes wait little
// (500 held them up to 40-60 ms in make bench-bridge's config figure).
const flushChunk = 50

func (f *fields) flush(ctx context.Context, st DeviceStore, timeout time.Duration, log func(msg string, args ...any)) {
	f.mu.Lock()
	batch := f.m
	f.m = make(map[uint64]*fieldDelta, len(batch))
	f.mu.Unlock()
	acts := make([]store.Activity, 0, min(len(batch), flushChunk))
	write := func() {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if err := st.RecordActivity(cctx, acts); err != nil {
			log("bridge: writing server-set device fields", "devices", len(acts), "err", err)
		}
		acts = acts[:0]
	}
	for _, d := range batch {
		acts = append(acts, store.Activity{
			NumID: d.ref.NumID, Heartbeat: d.heartbeat, Event: d.event, State: d.stateTime, ConfigSend: d.configSend,
			ErrorTime: d.errTime, ErrorStatus: d.errStatus, GatewayID: d.gatewayID, GatewayTime: d.gatewayTime,
			AckVersion: d.ackVersion, AckTime: d.ackTime,
		})
		if len(acts) == flushChunk {
			write()
		}
	}
	if len(acts) > 0 {
		write()
	}
}
