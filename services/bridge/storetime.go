package bridge

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/passerelle-iot/passerelle/pkg/store"
)

// Store operations timed by passerelle.bridge.store.duration.
const (
	opGetRegistry = iota
	opGetDevice
	opRecordActivity
	opListDevices
	opAddState
	numStoreOps
)

var storeOpNames = [numStoreOps]string{"get_registry", "get_device", "record_activity", "list_devices", "add_state"}

// timedStore measures every call the bridge makes to its store, by
// operation, whatever the back end.
type timedStore struct {
	st   DeviceStore
	dur  metric.Float64Histogram
	opts [numStoreOps]metric.RecordOption
}

func newTimedStore(st DeviceStore, dur metric.Float64Histogram) *timedStore {
	t := &timedStore{st: st, dur: dur}
	for i, n := range storeOpNames {
		t.opts[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String("op", n)))
	}
	return t
}

func (t *timedStore) done(op int, start time.Time) {
	t.dur.Record(context.Background(), time.Since(start).Seconds(), t.opts[op])
}

func (t *timedStore) GetRegistry(ctx context.Context, key store.RegistryKey) (*store.Registry, error) {
	defer t.done(opGetRegistry, time.Now())
	return t.st.GetRegistry(ctx, key)
}

func (t *timedStore) GetDevice(ctx context.Context, ref store.DeviceRef) (*store.Device, error) {
	defer t.done(opGetDevice, time.Now())
	return t.st.GetDevice(ctx, ref)
}

func (t *timedStore) RecordActivity(ctx context.Context, acts []store.Activity) error {
	defer t.done(opRecordActivity, time.Now())
	return t.st.RecordActivity(ctx, acts)
}

func (t *timedStore) ListDevices(ctx context.Context, q store.DeviceQuery) ([]*store.Device, error) {
	defer t.done(opListDevices, time.Now())
	return t.st.ListDevices(ctx, q)
}

func (t *timedStore) AddState(ctx context.Context, ref store.DeviceRef, s store.DeviceState) error {
	defer t.done(opAddState, time.Now())
	return t.st.AddState(ctx, ref, s)
}
