// Package storetest is the conformance suite every store.Store back end
// passes unchanged: it checks each method, each error of the contract, and
// the invariants that must hold under concurrent callers.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/store"
)

// Run runs the suite. open returns a fresh, empty store for one subtest;
// the suite closes it.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Registries", testRegistries},
		{"RegistryPaging", testRegistryPaging},
		{"UpdateRegistry", testUpdateRegistry},
		{"DeleteRegistry", testDeleteRegistry},
		{"Devices", testDevices},
		{"DeviceRefs", testDeviceRefs},
		{"UpdateDevice", testUpdateDevice},
		{"DeleteDevice", testDeleteDevice},
		{"ListDevicesFilters", testListDevicesFilters},
		{"ListDevicesPaging", testListDevicesPaging},
		{"Bindings", testBindings},
		{"BindingLimits", testBindingLimits},
		{"GatewayLimit", testGatewayLimit},
		{"Configs", testConfigs},
		{"AckConfig", testAckConfig},
		{"RecordActivity", testRecordActivity},
		{"ServerFieldsMoveForward", testServerFieldsMoveForward},
		{"ConcurrentActivity", testConcurrentActivity},
		{"States", testStates},
		{"ContextCanceled", testContextCanceled},
		{"ConcurrentBind", testConcurrentBind},
		{"ConcurrentModifyConfig", testConcurrentModifyConfig},
		{"ConcurrentDeleteRegistry", testConcurrentDeleteRegistry},
		{"ConcurrentCredentials", testConcurrentCredentials},
		{"ConcurrentCreateDevice", testConcurrentCreateDevice},
		{"Secrets", testSecrets},
		{"Ping", testPing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

var (
	t0  = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	reg = store.RegistryKey{Project: "p", Location: "us-central1", ID: "r"}
)

func ctx(t *testing.T) context.Context { return t.Context() }

func wantErr(t *testing.T, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("error = %v, want %v", err, kind)
	}
	if err.Error() == "" || err.Error() == kind.Error() {
		t.Errorf("error message %q does not explain itself", err.Error())
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustRegistry(t *testing.T, s store.Store, k store.RegistryKey) {
	t.Helper()
	must(t, s.CreateRegistry(ctx(t), &store.Registry{Key: k}))
}

func mustDevice(t *testing.T, s store.Store, k store.RegistryKey, id string, gwType int32) *store.Device {
	t.Helper()
	d, err := s.CreateDevice(ctx(t), &store.Device{Registry: k, ID: id, GatewayType: gwType}, t0)
	if err != nil {
		t.Fatalf("CreateDevice %s: %v", id, err)
	}
	return d
}

func byID(id string) store.DeviceRef { return store.DeviceRef{Registry: reg, ID: id} }
func byNum(n uint64) store.DeviceRef { return store.DeviceRef{Registry: reg, NumID: n} }
func ids(ds []*store.Device) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func testRegistries(t *testing.T, s store.Store) {
	r := &store.Registry{
		Key: reg,
		EventNotificationConfigs: []store.EventNotificationConfig{
			{PubsubTopicName: "projects/p/topics/a", SubfolderMatches: "x"},
			{PubsubTopicName: "projects/p/topics/b"},
		},
		StateNotificationTopic: "projects/p/topics/s",
		MQTTEnabledState:       1,
		HTTPEnabledState:       2,
		LogLevel:               3,
		CACertificates:         []string{"-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n"},
	}
	must(t, s.CreateRegistry(ctx(t), r))
	wantErr(t, s.CreateRegistry(ctx(t), &store.Registry{Key: reg}), store.ErrAlreadyExists)
	// The same id in another location or project is another registry.
	must(t, s.CreateRegistry(ctx(t), &store.Registry{Key: store.RegistryKey{Project: "p", Location: "europe-west1", ID: "r"}}))
	must(t, s.CreateRegistry(ctx(t), &store.Registry{Key: store.RegistryKey{Project: "q", Location: "us-central1", ID: "r"}}))

	got, err := s.GetRegistry(ctx(t), reg)
	must(t, err)
	if fmt.Sprint(*got) != fmt.Sprint(*r) {
		t.Errorf("GetRegistry = %+v, want %+v", *got, *r)
	}
	_, err = s.GetRegistry(ctx(t), store.RegistryKey{Project: "p", Location: "us-central1", ID: "nope"})
	wantErr(t, err, store.ErrNotFound)
}

func testRegistryPaging(t *testing.T, s store.Store) {
	want := []string{"a", "b", "b-1", "c", "z"}
	for _, id := range []string{"z", "b-1", "a", "c", "b"} {
		mustRegistry(t, s, store.RegistryKey{Project: "p", Location: "l", ID: id})
	}
	mustRegistry(t, s, store.RegistryKey{Project: "p", Location: "other", ID: "x"})
	var got []string
	after := ""
	for {
		page, err := s.ListRegistries(ctx(t), "p", "l", after, 2)
		must(t, err)
		if len(page) > 2 {
			t.Fatalf("page of %d > limit 2", len(page))
		}
		if len(page) == 0 {
			break
		}
		for _, r := range page {
			got = append(got, r.Key.ID)
		}
		after = page[len(page)-1].Key.ID
	}
	if !equalStrings(got, want) {
		t.Errorf("paged registries = %v, want %v", got, want)
	}
	page, err := s.ListRegistries(ctx(t), "nope", "l", "", 10)
	must(t, err)
	if len(page) != 0 {
		t.Errorf("unknown project lists %d registries", len(page))
	}
}

func testUpdateRegistry(t *testing.T, s store.Store) {
	mustRegistry(t, s, reg)
	got, err := s.UpdateRegistry(ctx(t), reg, func(r *store.Registry) error {
		r.LogLevel = 4
		r.StateNotificationTopic = "projects/p/topics/s2"
		r.Key.ID = "other" // ignored: the key cannot change
		return nil
	})
	must(t, err)
	if got.LogLevel != 4 || got.Key != reg {
		t.Errorf("UpdateRegistry returned %+v", got)
	}
	r, err := s.GetRegistry(ctx(t), reg)
	must(t, err)
	if r.LogLevel != 4 || r.StateNotificationTopic != "projects/p/topics/s2" {
		t.Errorf("update not stored: %+v", r)
	}
	boom := errors.New("boom")
	_, err = s.UpdateRegistry(ctx(t), reg, func(r *store.Registry) error {
		r.LogLevel = 1
		return boom
	})
	if err != boom {
		t.Errorf("update error = %v, want it as is", err)
	}
	r, err = s.GetRegistry(ctx(t), reg)
	must(t, err)
	if r.LogLevel != 4 {
		t.Errorf("aborted update was written: %+v", r)
	}
	_, err = s.UpdateRegistry(ctx(t), store.RegistryKey{Project: "p", Location: "l", ID: "nope"},
		func(*store.Registry) error { return nil })
	wantErr(t, err, store.ErrNotFound)
}

func testDeleteRegistry(t *testing.T, s store.Store) {
	mustRegistry(t, s, reg)
	mustDevice(t, s, reg, "d", 0)
	wantErr(t, s.DeleteRegistry(ctx(t), reg), store.ErrFailedPrecondition)
	must(t, s.DeleteDevice(ctx(t), byID("d")))
	must(t, s.DeleteRegistry(ctx(t), reg))
	wantErr(t, s.DeleteRegistry(ctx(t), reg), store.ErrNotFound)
	_, err := s.GetRegistry(ctx(t), reg)
	wantErr(t, err, store.ErrNotFound)
	// The id is free again.
	mustRegistry(t, s, reg)
}

func testDevices(t *testing.T, s store.Store) {
	mustRegistry(t, s, reg)
	in := &store.Device{
		Registry: reg,
		ID:       "dev-1",
		Credentials: []store.Credential{
			{Format: 2, Key: "-----BEGIN PUBLIC KEY-----\nX\n-----END PUBLIC KEY-----\n", ExpirationTime: t0.Add(time.Hour)},
			{Format: 1, Key: "cert"},
		},
		Blocked:           true,
		Metadata:          map[string]string{"a": "1", "b": ""},
		LogLevel:          2,
		GatewayType:       store.GatewayTypeNonGateway,
		GatewayAuthMethod: 3,
		Config:            store.DeviceConfig{Data: []byte("hello")},
	}
	d, err := s.CreateDevice(ctx(t), in, t0)
	must(t, err)
	if d.NumID == 0 || d.NumID >= 1<<63 {
		t.Fatalf("NumID = %d", d.NumID)
	}
	if d.Config.Version != 1 || !d.Config.CloudUpdateTime.Equal(t0) || string(d.Config.Data) != "hello" || d.State != nil {
		t.Errorf("created device config/state = %+v / %+v", d.Config, d.State)
	}
	got, err := s.GetDevice(ctx(t), byID("dev-1"))
	must(t, err)
	checkDevice(t, got, d)
	if got.Registry != reg || got.ID != "dev-1" || !got.Blocked || got.LogLevel != 2 ||
		got.GatewayType != store.GatewayTypeNonGateway || got.GatewayAuthMethod != 3 ||
		len(got.Credentials) != 2 || !got.Credentials[0].ExpirationTime.Equal(t0.Add(time.Hour)) ||
		got.Credentials[1].Key != "cert" || !got.Credentials[1].ExpirationTime.IsZero() ||
		got.Metadata["a"] != "1" || len(got.Metadata) != 2 {
		t.Errorf("GetDevice = %+v", got)
	}
	got2, err := s.GetDevice(ctx(t), byNum(d.NumID))
	must(t, err)
	checkDevice(t, got2, d)

	_, err = s.CreateDevice(ctx(t), &store.Device{Registry: reg, ID: "dev-1"}, t0)
	wantErr(t, err, store.ErrAlreadyExists)
	_, err = s.CreateDevice(ctx(t), &store.Device{Registry: store.RegistryKey{Project: "p", Location: "l", ID: "nope"}, ID: "x"}, t0)
	wantErr(t, err, store.ErrNotFound)
	_, err = s.CreateDevice(ctx(t), &store.Device{Registry: reg, ID: "too-many",
		Credentials: make([]store.Credential, store.MaxDeviceCredentials+1)}, t0)
	wantErr(t, err, store.ErrInvalidArgument)

	// Empty config data and numIds unique and increasing.
	d2 := mustDevice(t, s, reg, "dev-2", 0)
	if d2.NumID <= d.NumID {
		t.Errorf("numIds not increasing: %d then %d", d.NumID, d2.NumID)
	}
	if d2.Config.Version != 1 || len(d2.Config.Data) != 0 {
		t.Errorf("dev-2 config = %+v", d2.Config)
	}
	// The same id in another registry is another device.
	other := store.RegistryKey{Project: "p", Location: "us-central1", ID: "r2"}
	mustRegistry(t, s, other)
	d3 := mustDevice(t, s, other, "dev-1", 0)
	if d3.NumID == d.NumID {
		t.Error("numId reused across registries")
	}
}

// checkDevice compares the fields a read must give back as written.
func checkDevice(t *testing.T, got, want *store.Device) {
	t.Helper()
	if got.ID != want.ID || got.NumID != want.NumID || got.Registry != want.Registry ||
		got.Config.Version != want.Config.Version || !bytes.Equal(got.Config.Data, want.Config.Data) ||
		!got.Config.CloudUpdateTime.Equal(want.Config.CloudUpdateTime) || got.Blocked != want.Blocked ||
		len(got.Credentials) != len(want.Credentials) || len(got.Metadata) != len(want.Metadata) {
		t.Errorf("device = %+v, want %+v", got, want)
	}
}

func testDeviceRefs(t *testing.T, s store.Store) {
	mustRegistry(t, s, reg)
	other := store.RegistryKey{Project: "p", Location: "us-central1", ID: "r2"}
	mustRegistry(t, s, other)
	d := mustDevice(t, s, reg, "d", 0)
	o := mustDevice(t, s, other, "o", 0)
	for _, ref := range []store.DeviceRef{
		byID("nope"),
		byNum(d.NumID + 1000),
		byNum(o.NumID), // a numId of another registry
		{Registry: other, NumID: d.NumID},
		{Registry: other, ID: "d"},
		{Registry: store.RegistryKey{Project: "p", Location: "l", ID: "nope"}, ID: "d"},
		byNum(1<<64 - 1),
	} {
		_, err := s.GetDevice(ctx(t), ref)
		wantErr(t, err, store.ErrNotFound)
		_, err = s.UpdateDevice(ctx(t), ref, func(*store.Device) error { return nil })
		wantErr(t, err, store.ErrNotFound)
		wantErr(t, s.DeleteDevice(ctx(t), ref), store.ErrNotFound)
		_, err = s.ModifyConfig(ctx(t), ref, store.ConfigUpdate{Now: t0})
		wantErr(t, err, store.ErrNotFound)
		_, err = s.ListConfigs(ctx(t), ref, 0)
		wantErr(t, err, store.ErrNotFound)
		wantErr(t, s.AddState(ctx(t), ref, store.DeviceState{UpdateTime: t0}), store.ErrNotFound)
		_, err = s.ListStates(ctx(t), ref, 0)
		wantErr(t, err, store.ErrNotFound)
	}
}

func testUpdateDevice(t *testing.T, s store.Store) {
	mustRegistry(t, s, reg)
	d, err := s.CreateDevice(ctx(t), &store.Device{Registry: reg, ID: "d", GatewayType: store.GatewayTypeGateway,
		Config: store.DeviceConfig{Data: []byte("c1")}}, t0)
	must(t, err)
	t1 := t0.Add(time.Minute)
	got, err := s.UpdateDevice(ctx(t), byNum(d.NumID), func(d *store.Device) error {
		d.Credentials = []store.Credential{{Format: 2, Key: "k"}}
		d.Blocked = true
		d.Metadata = map[string]string{"k": "v"}
		d.LogLevel = 4
		d.GatewayAuthMethod = 2
		d.LastAccessedGatewayID = "gw"
		d.LastAccessedGatewayTime = t1
		d.LastHeartbeatTime = t1.Add(1)
		d.LastEventTime = t1.Add(2)
		d.LastStateTime = t1.Add(3)
		d.LastConfigAckTime = t1.Add(4)
		d.LastConfigSendTime = t1.Add(5)
		d.LastErrorTime = t1.Add(6)
		d.LastErrorStatus = &store.Status{Code: 9, Message: "bad"}
		// Not writable through UpdateDevice:
		d.ID = "renamed"
		d.NumID = 7
		d.GatewayType = store.GatewayTypeNonGateway
		d.Config = store.DeviceConfig{Version: 99, Data: []byte("x")}
		d.State = &store.DeviceState{UpdateTime: t1, Data: []byte("s")}
		return nil
	})
	must(t, err)
	for _, g := range []*store.Device{got, mustGet(t, s, byID("d"))} {
		if len(g.Credentials) != 1 || !g.Blocked || g.Metadata["k"] != "v" || g.LogLevel != 4 || g.GatewayAuthMethod != 2 ||
			g.LastAccessedGatewayID != "gw" || !g.LastAccessedGatewayTime.Equal(t1) || !g.LastHeartbeatTime.Equal(t1.Add(1)) ||
			!g.LastEventTime.Equal(t1.Add(2)) || !g.LastStateTime.Equal(t1.Add(3)) || !g.LastConfigAckTime.Equal(t1.Add(4)) ||
			!g.LastConfigSendTime.Equal(t1.Add(5)) || !g.LastErrorTime.Equal(t1.Add(6)) ||
			g.LastErrorStatus == nil || *g.LastErrorStatus != (store.Status{Code: 9, Message: "bad"}) {
			t.Errorf("updated device = %+v", g)
		}
		if g.ID != "d" || g.NumID != d.NumID || g.GatewayType != store.GatewayTypeGateway ||
			g.Config.Version != 1 || string(g.Config.Data) != "c1" || g.State != nil {
			t.Errorf("UpdateDevice wrote a field it must not: %+v", g)
		}
	}
	boom := errors.New("boom")
	_, err = s.UpdateDevice(ctx(t), byID("d"), func(d *store.Device) error {
		d.Blocked = false
		return boom
	})
	if err != boom {
		t.Errorf("update error = %v, want it as is", err)
	}
	if !mustGet(t, s, byID("d")).Blocked {
		t.Error("aborted update was written")
	}
	// Clearing the error status.
	got, err = s.UpdateDevice(ctx(t), byID("d"), func(d *store.Device) error {
		d.LastErrorStatus = nil
		d.LastErrorTime = time.Time{}
		return nil
	})
	must(t, err)
	if got.LastErrorStatus != nil || !got.LastErrorTime.IsZero() {
		t.Errorf("cleared error = %+v at %v", got.LastErrorStatus, got.LastErrorTime)
	}
	_, err = s.UpdateDevice(ctx(t), byID("d"), func(d *store.Device) error {
		d.Credentials = make([]store.Credential, store.MaxDeviceCredentials+1)
		return nil
	})
	wantErr(t, err, store.ErrInvalidArgument)
}

func mustGet(t *testing.T, s store.Store, ref store.DeviceRef) *store.Device {
	t.Helper()
	d, err := s.GetDevice(ctx(t), ref)
	if err != nil {
		t.Fatalf("GetDevice %+v: %v", ref, err)
	}
	return d
}

func testDeleteDevice(t *testing.T, s store.Store) {
	mustRegistry(t, s, reg)
	gw := mustDevice(t, s, reg, "gw", store.GatewayTypeGateway)
	d := mustDevice(t, s, reg, "d", 0)
	must(t, s.BindDevice(ctx(t), byID("gw"), byID("d")))
	must(t, s.AddState(ctx(t), byID("d"), store.DeviceState{UpdateTime: t0, Data: []byte("s")}))
	_, err := s.ModifyConfig(ctx(t), byID("d"), store.ConfigUpdate{Now: t0, Data: []byte("c")})
	must(t, err)

	wantErr(t, s.DeleteDevice(ctx(t), byNum(gw.NumID)), store.ErrFailedPrecondition)
	// Deleting the device removes its bindings, so the gateway can go.
	must(t, s.DeleteDevice(ctx(t), byNum(d.NumID)))
	_, err = s.GetDevice(ctx(t), byID("d"))
	wantErr(t, err, store.ErrNotFound)
	list, err := s.ListDevices(ctx(t), store.DeviceQuery{Registry: reg, BoundToGateway: &store.DeviceRef{Registry: reg, ID: "gw"}, Limit: 10})
	must(t, err)
	if len(list) != 0 {
		t.Errorf("bindings survive the device: %v", ids(list))
	}
	must(t, s.DeleteDevice(ctx(t), byID("gw")))
	wantErr(t, s.DeleteDevice(ctx(t), byID("gw")), store.ErrNotFound)

	// A recreated device starts afresh, with a new numId.
	d2 := mustDevice(t, s, reg, "d", 0)
	if d2.NumID == d.NumID {
		t.Error("numId reused after delete")
	}
	cs, err := s.ListConfigs(ctx(t), byID("d"), 0)
	must(t, err)
	ss, err := s.ListStates(ctx(t), byID("d"), 0)
	must(t, err)
	if len(cs) != 1 || cs[0].Version != 1 || len(ss) != 0 || d2.State != nil {
		t.Errorf("recreated device has configs %+v states %+v", cs, ss)
	}
}

func testListDevicesFilters(t *testing.T, s store.Store) {
	mustRegistry(t, s, reg)
	other := store.RegistryKey{Project: "p", Location: "us-central1", ID: "r2"}
	mustRegistry(t, s, other)
	g1 := mustDevice(t, s, reg, "g1", store.GatewayTypeGateway)
	mustDevice(t, s, reg, "g2", store.GatewayTypeGateway)
	a := mustDevice(t, s, reg, "a", store.GatewayTypeUnspecified)
	b := mustDevice(t, s, reg, "b", store.GatewayTypeNonGateway)
	mustDevice(t, s, reg, "c", store.GatewayTypeNonGateway)
	og := mustDevice(t, s, other, "g1", store.GatewayTypeGateway)
	mustDevice(t, s, other, "a", 0)
	must(t, s.BindDevice(ctx(t), byID("g1"), byID("a")))
	must(t, s.BindDevice(ctx(t), byID("g1"), byID("b")))
	must(t, s.BindDevice(ctx(t), byID("g2"), byID("b")))
	must(t, s.BindDevice(ctx(t), store.DeviceRef{Registry: other, ID: "g1"}, store.DeviceRef{Registry: other, ID: "a"}))

	ref := func(id string) *store.DeviceRef { return &store.DeviceRef{Registry: reg, ID: id} }
	num := func(n uint64) *store.DeviceRef { return &store.DeviceRef{Registry: reg, NumID: n} }
	for _, tc := range []struct {
		name string
		q    store.DeviceQuery
		want []string
	}{
		{"all", store.DeviceQuery{}, []string{"g1", "g2", "a", "b", "c"}},
		{"limit", store.DeviceQuery{Limit: 2}, []string{"g1", "g2"}},
		{"after", store.DeviceQuery{AfterNumID: g1.NumID}, []string{"g2", "a", "b", "c"}},
		{"ids", store.DeviceQuery{IDs: []string{"c", "a", "nope"}}, []string{"a", "c"}},
		{"numIds", store.DeviceQuery{NumIDs: []uint64{b.NumID, g1.NumID, og.NumID, 1<<64 - 1}}, []string{"g1", "b"}},
		{"ids and numIds", store.DeviceQuery{IDs: []string{"a", "b"}, NumIDs: []uint64{b.NumID, g1.NumID}}, []string{"b"}},
		{"gateways", store.DeviceQuery{GatewayType: store.GatewayTypeGateway}, []string{"g1", "g2"}},
		{"non-gateways", store.DeviceQuery{GatewayType: store.GatewayTypeNonGateway}, []string{"a", "b", "c"}},
		{"bound to g1", store.DeviceQuery{BoundToGateway: ref("g1")}, []string{"a", "b"}},
		{"bound to g1 by numId", store.DeviceQuery{BoundToGateway: num(g1.NumID)}, []string{"a", "b"}},
		{"bound to g2", store.DeviceQuery{BoundToGateway: ref("g2")}, []string{"b"}},
		{"bound to unknown", store.DeviceQuery{BoundToGateway: ref("nope")}, nil},
		{"bound to other registry's gateway", store.DeviceQuery{BoundToGateway: num(og.NumID)}, nil},
		{"gateways of b", store.DeviceQuery{GatewaysOfDevice: ref("b")}, []string{"g1", "g2"}},
		{"gateways of a by numId", store.DeviceQuery{GatewaysOfDevice: num(a.NumID)}, []string{"g1"}},
		{"gateways of c", store.DeviceQuery{GatewaysOfDevice: ref("c")}, nil},
		{"gateways of unknown", store.DeviceQuery{GatewaysOfDevice: ref("nope")}, nil},
		{"combined", store.DeviceQuery{BoundToGateway: ref("g1"), IDs: []string{"b", "c"}, GatewayType: store.GatewayTypeNonGateway}, []string{"b"}},
		{"combined after", store.DeviceQuery{GatewaysOfDevice: ref("b"), AfterNumID: g1.NumID, Limit: 1}, []string{"g2"}},
		{"empty slices", store.DeviceQuery{IDs: []string{}, NumIDs: []uint64{}}, []string{"g1", "g2", "a", "b", "c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := tc.q
			q.Registry = reg
			if q.Limit == 0 {
				q.Limit = 100
			}
			got, err := s.ListDevices(ctx(t), q)
			must(t, err)
			if !equalStrings(ids(got), tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Errorf("ListDevices = %v, want %v", ids(got), tc.want)
			}
			for i := 1; i < len(got); i++ {
				if got[i].NumID <= got[i-1].NumID {
					t.Errorf("not ordered by numId: %d then %d", got[i-1].NumID, got[i].NumID)
				}
			}
			for _, d := range got {
				if d.Registry != reg || d.Config.Version != 1 {
					t.Errorf("listed device %+v is incomplete", d)
				}
			}
		})
	}
	got, err := s.ListDevices(ctx(t), store.DeviceQuery{Registry: store.RegistryKey{Project: "p", Location: "l", ID: "nope"}, Limit: 10})
	must(t, err)
	if len(got) != 0 {
		t.Errorf("unknown registry lists %v", ids(got))
	}
}

func testListDevicesPaging(t *testing.T, s store.Store) {
	mustRegistry(t, s, reg)
	const n = 50
	for i := range n {
		mustDevice(t, s, reg, fmt.Sprintf("d%03d", i), 0)
	}
	// Pages stay stable while devices are inserted: each new one has a
	// larger numId and appears at the end.
	seen := map[string]bool{}
	var after uint64
	added := 0
	for {
		page, err := s.ListDevices(ctx(t), store.DeviceQuery{Registry: reg, AfterNumID: after, Limit: 7})
		must(t, err)
		if len(page) == 0 {
			break
		}
		for _, d := range page {
			if seen[d.ID] {
				t.Fatalf("device %s listed twice", d.ID)
			}
			seen[d.ID] = true
			after = d.NumID
		}
		if added < 5 {
			mustDevice(t, s, reg, fmt.Sprintf("new%d", added), 0)
			added++
		}
	}
	if len(seen) != n+added {
		t.Errorf("listed %d devices, want %d", len(seen), n+added)
	}
}

func testBindings(t *testing.T, s store.Store) {
	mustRegistry(t, s, reg)
	other := store.RegistryKey{Project: "p", Location: "us-central1", ID: "r2"}
	mustRegistry(t, s, other)
	gw := mustDevice(t, s, reg, "gw", store.GatewayTypeGateway)
	mustDevice(t, s, reg, "gw2", store.GatewayTypeGateway)
	d := mustDevice(t, s, reg, "d", 0)
	mustDevice(t, s, other, "od", 0)

	must(t, s.BindDevice(ctx(t), byID("gw"), byID("d")))
	must(t, s.BindDevice(ctx(t), byNum(gw.NumID), byNum(d.NumID))) // idempotent
	got, err := s.ListDevices(ctx(t), store.DeviceQuery{Registry: reg, BoundToGateway: &store.DeviceRef{Registry: reg, ID: "gw"}, Limit: 10})
	must(t, err)
	if !equalStrings(ids(got), []string{"d"}) {
		t.Errorf("bound = %v", ids(got))
	}

	wantErr(t, s.BindDevice(ctx(t), byID("nope"), byID("d")), store.ErrNotFound)
	wantErr(t, s.BindDevice(ctx(t), byID("gw"), byID("nope")), store.ErrNotFound)
	wantErr(t, s.BindDevice(ctx(t), byID("d"), byID("gw")), store.ErrInvalidArgument)   // d is no gateway
	wantErr(t, s.BindDevice(ctx(t), byID("gw"), byID("gw2")), store.ErrInvalidArgument) // gw2 is one
	wantErr(t, s.BindDevice(ctx(t), byID("gw"), store.DeviceRef{Registry: other, ID: "od"}), store.ErrInvalidArgument)

	must(t, s.UnbindDevice(ctx(t), byID("gw"), byNum(d.NumID)))
	wantErr(t, s.UnbindDevice(ctx(t), byID("gw"), byID("d")), store.ErrNotFound)
	wantErr(t, s.UnbindDevice(ctx(t), byID("nope"), byID("d")), store.ErrNotFound)
	wantErr(t, s.UnbindDevice(ctx(t), byID("gw"), byID("nope")), store.ErrNotFound)
	// Unbound, the gateway can be deleted.
	must(t, s.DeleteDevice(ctx(t), byID("gw")))
}

func testBindingLimits(t *testing.T, s store.Store) {
	mustRegistry(t, s, reg)
	mustDevice(t, s, reg, "d", 0)
	for i := range store.MaxGatewaysPerDevice + 1 {
		mustDevice(t, s, reg, fmt.Sprintf("gw%d", i), store.GatewayTypeGateway)
	}
	for i := range store.MaxGatewaysPerDevice {
		must(t, s.BindDevice(ctx(t), byID(fmt.Sprintf("gw%d", i)), byID("d")))
	}
	err := s.BindDevice(ctx(t), byID(fmt.Sprintf("gw%d", store.MaxGatewaysPerDevice)), byID("d"))
	wantErr(t, err, store.ErrResourceExhausted)
	// Binding again one already bound is still fine at the limit.
	must(t, s.BindDevice(ctx(t), byID("gw0"), byID("d")))
	must(t, s.UnbindDevice(ctx(t), byID("gw0"), byID("d")))
	must(t, s.BindDevice(ctx(t), byID(fmt.Sprintf("gw%d", store.MaxGatewaysPerDevice)), byID("d")))
	got, err := s.ListDevices(ctx(t), store.DeviceQuery{Registry: reg, GatewaysOfDevice: &store.DeviceRef{Registry: reg, ID: "d"}, Limit: 100})
	must(t, err)
	if len(got) != store.MaxGatewaysPerDevice {
		t.Errorf("device bound to %d gateways", len(got))
	}
}

// testGatewayLimit fills a gateway up to MaxDevicesPerGateway. The
// devices are created concurrently to keep the test quick on durable
// stores.
func testGatewayLimit(t *testing.T, s store.Store) {
	if (testing.Short() || raceEnabled) && os.Getenv("PASSERELLE_TEST_LONG") == "" {
		t.Skip("creates 10,000 devices: runs without -short and -race, or with PASSERELLE_TEST_LONG=1")
	}
	mustRegistry(t, s, reg)
	mustDevice(t, s, reg, "gw", store.GatewayTypeGateway)
	n := store.MaxDevicesPerGateway + 1
	var wg sync.WaitGroup
	var failed atomic.Int64
	const workers = 16
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				id := fmt.Sprintf("d%05d", i)
				if _, err := s.CreateDevice(ctx(t), &store.Device{Registry: reg, ID: id}, t0); err != nil {
					failed.Add(1)
					t.Errorf("CreateDevice %s: %v", id, err)
					return
				}
				if i == n-1 {
					continue
				}
				if err := s.BindDevice(ctx(t), byID("gw"), byID(id)); err != nil {
					failed.Add(1)
					t.Errorf("BindDevice %s: %v", id, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.FailNow()
	}
	wantErr(t, s.BindDevice(ctx(t), byID("gw"), byID(fmt.Sprintf("d%05d", n-1))), store.ErrResourceExhausted)
	must(t, s.BindDevice(ctx(t), byID("gw"), byID("d00000"))) // idempotent at the limit
	// Unbinding or deleting a bound device frees a place.
	must(t, s.UnbindDevice(ctx(t), byID("gw"), byID("d00000")))
	must(t, s.BindDevice(ctx(t), byID("gw"), byID(fmt.Sprintf("d%05d", n-1))))
	wantErr(t, s.BindDevice(ctx(t), byID("gw"), byID("d00000")), store.ErrResourceExhausted)
	must(t, s.DeleteDevice(ctx(t), byID("d00001")))
	must(t, s.BindDevice(ctx(t), byID("gw"), byID("d00000")))
	wantErr(t, s.DeleteDevice(ctx(t), byID("gw")), store.ErrFailedPrecondition)
}

func testConfigs(t *testing.T, s store.Store) {
	mustRegistry(t, s, reg)
	d, err := s.CreateDevice(ctx(t), &store.Device{Registry: reg, ID: "d", Config: store.DeviceConfig{Data: []byte("v1")}}, t0)
	must(t, err)
	cs, err := s.ListConfigs(ctx(t), byID("d"), 0)
	must(t, err)
	if len(cs) != 1 || cs[0].Version != 1 || string(cs[0].Data) != "v1" || !cs[0].CloudUpdateTime.Equal(t0) || !cs[0].DeviceAckTime.IsZero() {
		t.Fatalf("configs at creation = %+v", cs)
	}
	// Creation's version 1 does not count for MinInterval.
	now := t0.Add(time.Millisecond)
	c, err := s.ModifyConfig(ctx(t), byNum(d.NumID), store.ConfigUpdate{Data: []byte("v2"), Now: now, MinInterval: time.Second})
	must(t, err)
	if c.Version != 2 || string(c.Data) != "v2" || !c.CloudUpdateTime.Equal(now) {
		t.Errorf("ModifyConfig = %+v", c)
	}
	if want := (store.DeviceRef{Registry: reg, ID: "d", NumID: d.NumID}); c.Device != want {
		t.Errorf("ModifyConfig by numId names the device %+v, want %+v", c.Device, want)
	}
	_, err = s.ModifyConfig(ctx(t), byID("d"), store.ConfigUpdate{Data: []byte("x"), Now: now.Add(999 * time.Millisecond), MinInterval: time.Second})
	wantErr(t, err, store.ErrResourceExhausted)
	_, err = s.ModifyConfig(ctx(t), byID("d"), store.ConfigUpdate{VersionToUpdate: 1, Now: now.Add(time.Hour)})
	wantErr(t, err, store.ErrFailedPrecondition)
	now = now.Add(time.Second)
	c, err = s.ModifyConfig(ctx(t), byID("d"), store.ConfigUpdate{VersionToUpdate: 2, Data: []byte("v3"), Now: now, MinInterval: time.Second})
	must(t, err)
	if c.Version != 3 {
		t.Errorf("version = %d, want 3", c.Version)
	}
	if c.Device.NumID != d.NumID || c.Device.ID != "d" {
		t.Errorf("ModifyConfig by id names the device %+v, want numId %d", c.Device, d.NumID)
	}
	got := mustGet(t, s, byID("d"))
	if got.Config.Version != 3 || string(got.Config.Data) != "v3" || !got.Config.CloudUpdateTime.Equal(now) {
		t.Errorf("device config = %+v", got.Config)
	}
	for v := 4; v <= 25; v++ {
		now = now.Add(time.Second)
		c, err := s.ModifyConfig(ctx(t), byID("d"), store.ConfigUpdate{Data: fmt.Appendf(nil, "v%d", v), Now: now})
		must(t, err)
		if c.Version != int64(v) {
			t.Fatalf("version = %d, want %d", c.Version, v)
		}
	}
	cs, err = s.ListConfigs(ctx(t), byID("d"), 0)
	must(t, err)
	if len(cs) != store.KeptConfigVersions {
		t.Fatalf("kept %d configs, want %d", len(cs), store.KeptConfigVersions)
	}
	for i, c := range cs {
		if want := int64(25 - i); c.Version != want || string(c.Data) != fmt.Sprintf("v%d", want) {
			t.Errorf("configs[%d] = %d %q, want %d", i, c.Version, c.Data, want)
		}
	}
	cs, err = s.ListConfigs(ctx(t), byNum(d.NumID), 3)
	must(t, err)
	if len(cs) != 3 || cs[0].Version != 25 || cs[2].Version != 23 {
		t.Errorf("ListConfigs limit 3 = %+v", cs)
	}
}

func testAckConfig(t *testing.T, s store.Store) {
	mustRegistry(t, s, reg)
	d := mustDevice(t, s, reg, "d", 0)
	now := t0.Add(time.Second)
	_, err := s.ModifyConfig(ctx(t), byID("d"), store.ConfigUpdate{Data: []byte("v2"), Now: now})
	must(t, err)
	// An ack of the older version marks that version only.
	ack1 := now.Add(time.Second)
	must(t, s.AckConfig(ctx(t), byNum(d.NumID), 1, ack1))
	got := mustGet(t, s, byID("d"))
	if !got.LastConfigAckTime.Equal(ack1) || !got.Config.DeviceAckTime.IsZero() {
		t.Errorf("after acking version 1: lastConfigAckTime %v, latest config ack %v", got.LastConfigAckTime, got.Config.DeviceAckTime)
	}
	ack2 := ack1.Add(time.Second)
	must(t, s.AckConfig(ctx(t), byID("d"), 2, ack2))
	got = mustGet(t, s, byID("d"))
	if !got.LastConfigAckTime.Equal(ack2) || !got.Config.DeviceAckTime.Equal(ack2) {
		t.Errorf("after acking version 2: lastConfigAckTime %v, config ack %v, want %v", got.LastConfigAckTime, got.Config.DeviceAckTime, ack2)
	}
	cs, err := s.ListConfigs(ctx(t), byID("d"), 0)
	must(t, err)
	if len(cs) != 2 || !cs[0].DeviceAckTime.Equal(ack2) || !cs[1].DeviceAckTime.Equal(ack1) {
		t.Errorf("configs after acks = %+v", cs)
	}
	wantErr(t, s.AckConfig(ctx(t), byID("nope"), 1, ack2), store.ErrNotFound)
}

func testRecordActivity(t *testing.T, s store.Store) {
	mustRegistry(t, s, reg)
	a := mustDevice(t, s, reg, "dev-a", 0)
	b := mustDevice(t, s, reg, "dev-b", 0)
	t1, t2 := t0.Add(time.Second), t0.Add(2*time.Second)
	errStatus := &store.Status{Code: 6, Message: "another connection"}
	must(t, s.RecordActivity(ctx(t), []store.Activity{
		{NumID: a.NumID, Heartbeat: t2, Event: t1, ErrorTime: t1, ErrorStatus: errStatus, GatewayID: "gw-1", GatewayTime: t1},
		{NumID: b.NumID, State: t1, ConfigSend: t2},
		{NumID: 999999}, // deleted meanwhile: skipped
	}))
	got := mustGet(t, s, byID("dev-a"))
	if !got.LastHeartbeatTime.Equal(t2) || !got.LastEventTime.Equal(t1) || !got.LastErrorTime.Equal(t1) ||
		got.LastErrorStatus == nil || got.LastErrorStatus.Code != 6 || got.LastAccessedGatewayID != "gw-1" || !got.LastAccessedGatewayTime.Equal(t1) {
		t.Errorf("dev-a after RecordActivity: %+v", got)
	}
	if got.Blocked || got.Config.Version != 1 {
		t.Errorf("RecordActivity changed other fields: %+v", got)
	}
	// A config acknowledgement rides along.
	must(t, s.RecordActivity(ctx(t), []store.Activity{{NumID: b.NumID, AckVersion: 1, AckTime: t2}}))
	if got := mustGet(t, s, byID("dev-b")); !got.Config.DeviceAckTime.Equal(t2) || !got.LastConfigAckTime.Equal(t2) {
		t.Errorf("ack through RecordActivity: config ack %v, lastConfigAckTime %v", got.Config.DeviceAckTime, got.LastConfigAckTime)
	}
	gotB := mustGet(t, s, byID("dev-b"))
	if !gotB.LastStateTime.Equal(t1) || !gotB.LastConfigSendTime.Equal(t2) || !gotB.LastHeartbeatTime.IsZero() {
		t.Errorf("dev-b after RecordActivity: %+v", gotB)
	}
	// Older news changes nothing; newer news moves each field on.
	must(t, s.RecordActivity(ctx(t), []store.Activity{
		{NumID: a.NumID, Heartbeat: t1, ErrorTime: t0, ErrorStatus: &store.Status{Code: 3}, GatewayID: "gw-old", GatewayTime: t0},
	}))
	got = mustGet(t, s, byID("dev-a"))
	if !got.LastHeartbeatTime.Equal(t2) || got.LastErrorStatus.Code != 6 || got.LastAccessedGatewayID != "gw-1" {
		t.Errorf("older activity moved fields back: %+v", got)
	}
	t3 := t2.Add(time.Second)
	must(t, s.RecordActivity(ctx(t), []store.Activity{
		{NumID: a.NumID, ErrorTime: t3, ErrorStatus: &store.Status{Code: 8, Message: "rate"}, GatewayID: "gw-2", GatewayTime: t3},
	}))
	got = mustGet(t, s, byID("dev-a"))
	if got.LastErrorStatus.Code != 8 || !got.LastErrorTime.Equal(t3) || got.LastAccessedGatewayID != "gw-2" || !got.LastHeartbeatTime.Equal(t2) {
		t.Errorf("newer activity: %+v", got)
	}
}

// testServerFieldsMoveForward: several bridges write a device's
// server-set fields, each with its own clock and its own delays, so a
// write may carry an older time than the stored one. Every time field
// keeps the later value, whichever path writes it (RecordActivity,
// AckConfig, AddState), and what goes with a time (error status, gateway,
// the latest state) follows it.
func testServerFieldsMoveForward(t *testing.T, s store.Store) {
	mustRegistry(t, s, reg)
	d := mustDevice(t, s, reg, "d", 0)
	newer, older := t0.Add(time.Minute), t0.Add(time.Second)

	must(t, s.RecordActivity(ctx(t), []store.Activity{{NumID: d.NumID, Heartbeat: newer, Event: newer, State: newer,
		ConfigSend: newer, ErrorTime: newer, ErrorStatus: &store.Status{Code: 6, Message: "newer"},
		GatewayID: "gw-newer", GatewayTime: newer, AckVersion: 1, AckTime: newer}}))
	must(t, s.RecordActivity(ctx(t), []store.Activity{{NumID: d.NumID, Heartbeat: older, Event: older, State: older,
		ConfigSend: older, ErrorTime: older, ErrorStatus: &store.Status{Code: 3, Message: "older"},
		GatewayID: "gw-older", GatewayTime: older, AckVersion: 1, AckTime: older}}))
	must(t, s.AckConfig(ctx(t), byID("d"), 1, older))
	got := mustGet(t, s, byID("d"))
	for _, f := range []struct {
		name string
		at   time.Time
	}{
		{"lastHeartbeatTime", got.LastHeartbeatTime}, {"lastEventTime", got.LastEventTime},
		{"lastStateTime", got.LastStateTime}, {"lastConfigSendTime", got.LastConfigSendTime},
		{"lastErrorTime", got.LastErrorTime}, {"lastAccessedGatewayTime", got.LastAccessedGatewayTime},
		{"lastConfigAckTime", got.LastConfigAckTime}, {"config.deviceAckTime", got.Config.DeviceAckTime},
	} {
		if !f.at.Equal(newer) {
			t.Errorf("%s = %v after an older write, want %v", f.name, f.at, newer)
		}
	}
	if got.LastErrorStatus == nil || got.LastErrorStatus.Message != "newer" || got.LastAccessedGatewayID != "gw-newer" {
		t.Errorf("error status %+v, gateway %q: an older write replaced them", got.LastErrorStatus, got.LastAccessedGatewayID)
	}
	cs, err := s.ListConfigs(ctx(t), byID("d"), 1)
	must(t, err)
	if len(cs) != 1 || !cs[0].DeviceAckTime.Equal(newer) {
		t.Errorf("config history ack = %+v, want %v", cs, newer)
	}

	// States: a report that reached the store late (an older time) is
	// kept in the history, in its place, but is not the latest.
	must(t, s.AddState(ctx(t), byID("d"), store.DeviceState{UpdateTime: newer.Add(time.Second), Data: []byte("latest")}))
	must(t, s.AddState(ctx(t), byID("d"), store.DeviceState{UpdateTime: newer.Add(-time.Second), Data: []byte("late")}))
	got = mustGet(t, s, byID("d"))
	if got.State == nil || string(got.State.Data) != "latest" || !got.LastStateTime.Equal(newer.Add(time.Second)) {
		t.Errorf("state %+v, lastStateTime %v after a late report: want the latest", got.State, got.LastStateTime)
	}
	ss, err := s.ListStates(ctx(t), byID("d"), 0)
	must(t, err)
	if len(ss) != 2 || string(ss[0].Data) != "latest" || string(ss[1].Data) != "late" {
		t.Errorf("states = %+v, want newest first by time", ss)
	}

	// A state stored between the reported lastStateTime and the latest
	// state's time moves neither back.
	must(t, s.RecordActivity(ctx(t), []store.Activity{{NumID: d.NumID, State: newer.Add(3 * time.Second)}}))
	must(t, s.AddState(ctx(t), byID("d"), store.DeviceState{UpdateTime: newer.Add(2 * time.Second), Data: []byte("between")}))
	got = mustGet(t, s, byID("d"))
	if string(got.State.Data) != "between" || !got.LastStateTime.Equal(newer.Add(3*time.Second)) {
		t.Errorf("state %q, lastStateTime %v: want the state of %v, lastStateTime %v", got.State.Data, got.LastStateTime,
			newer.Add(2*time.Second), newer.Add(3*time.Second))
	}

	// Newer news still moves every field on.
	newest := newer.Add(time.Hour)
	must(t, s.AckConfig(ctx(t), byID("d"), 1, newest))
	must(t, s.RecordActivity(ctx(t), []store.Activity{{NumID: d.NumID, Heartbeat: newest, ErrorTime: newest,
		ErrorStatus: &store.Status{Code: 8, Message: "newest"}}}))
	got = mustGet(t, s, byID("d"))
	if !got.LastConfigAckTime.Equal(newest) || !got.Config.DeviceAckTime.Equal(newest) || !got.LastHeartbeatTime.Equal(newest) ||
		got.LastErrorStatus.Message != "newest" {
		t.Errorf("newest writes: %+v", got)
	}
}

// testConcurrentActivity: writers with shuffled times, at once; every
// field ends at the latest time written.
func testConcurrentActivity(t *testing.T, s store.Store) {
	mustRegistry(t, s, reg)
	d := mustDevice(t, s, reg, "d", 0)
	const writers, each = 4, 10
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				// Writer w writes times w, w+writers, ... in reverse
				// for odd writers: the arrival order says nothing.
				k := i
				if w%2 == 1 {
					k = each - 1 - i
				}
				at := t0.Add(time.Duration(w+k*writers) * time.Second)
				if err := s.RecordActivity(ctx(t), []store.Activity{{NumID: d.NumID, Heartbeat: at, Event: at,
					ErrorTime: at, ErrorStatus: &store.Status{Code: 6, Message: at.String()}}}); err != nil {
					t.Error(err)
					return
				}
				if err := s.AckConfig(ctx(t), byNum(d.NumID), 1, at); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	last := t0.Add(time.Duration(writers*each-1) * time.Second)
	got := mustGet(t, s, byID("d"))
	if !got.LastHeartbeatTime.Equal(last) || !got.LastEventTime.Equal(last) || !got.LastErrorTime.Equal(last) ||
		got.LastErrorStatus == nil || got.LastErrorStatus.Message != last.String() ||
		!got.LastConfigAckTime.Equal(last) || !got.Config.DeviceAckTime.Equal(last) {
		t.Errorf("after concurrent writers: %+v, want every time at %v", got, last)
	}
}

func testStates(t *testing.T, s store.Store) {
	mustRegistry(t, s, reg)
	d := mustDevice(t, s, reg, "d", 0)
	ss, err := s.ListStates(ctx(t), byID("d"), 0)
	must(t, err)
	if len(ss) != 0 {
		t.Errorf("new device has states %+v", ss)
	}
	for i := 1; i <= 15; i++ {
		must(t, s.AddState(ctx(t), byNum(d.NumID), store.DeviceState{UpdateTime: t0.Add(time.Duration(i) * time.Second), Data: fmt.Appendf(nil, "s%d", i)}))
	}
	got := mustGet(t, s, byID("d"))
	if got.State == nil || string(got.State.Data) != "s15" || !got.State.UpdateTime.Equal(t0.Add(15*time.Second)) ||
		!got.LastStateTime.Equal(t0.Add(15*time.Second)) {
		t.Errorf("latest state = %+v, LastStateTime %v", got.State, got.LastStateTime)
	}
	ss, err = s.ListStates(ctx(t), byID("d"), 0)
	must(t, err)
	if len(ss) != store.KeptStates {
		t.Fatalf("kept %d states, want %d", len(ss), store.KeptStates)
	}
	for i, st := range ss {
		if want := fmt.Sprintf("s%d", 15-i); string(st.Data) != want {
			t.Errorf("states[%d] = %q, want %q", i, st.Data, want)
		}
	}
	ss, err = s.ListStates(ctx(t), byID("d"), 2)
	must(t, err)
	if len(ss) != 2 || string(ss[0].Data) != "s15" {
		t.Errorf("ListStates limit 2 = %+v", ss)
	}
}

func testContextCanceled(t *testing.T, s store.Store) {
	mustRegistry(t, s, reg)
	c, cancel := context.WithCancel(ctx(t))
	cancel()
	if _, err := s.GetDevice(c, byID("d")); err != context.Canceled {
		t.Errorf("GetDevice error = %v, want context.Canceled", err)
	}
	if _, err := s.CreateDevice(c, &store.Device{Registry: reg, ID: "d"}, t0); err != context.Canceled {
		t.Errorf("CreateDevice error = %v, want context.Canceled", err)
	}
	if _, err := s.ListDevices(c, store.DeviceQuery{Registry: reg, Limit: 1}); err != context.Canceled {
		t.Errorf("ListDevices error = %v, want context.Canceled", err)
	}
}

// parallel runs fn(i) for i in [0, n) at once and counts the errors by kind.
func parallel(t *testing.T, n int, fn func(i int) error) map[error]int {
	t.Helper()
	var mu sync.Mutex
	counts := map[error]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			err := fn(i)
			kind := err
			for _, k := range []error{store.ErrNotFound, store.ErrAlreadyExists, store.ErrFailedPrecondition,
				store.ErrInvalidArgument, store.ErrResourceExhausted} {
				if errors.Is(err, k) {
					kind = k
				}
			}
			mu.Lock()
			counts[kind]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	return counts
}

func testConcurrentBind(t *testing.T, s store.Store) {
	mustRegistry(t, s, reg)
	mustDevice(t, s, reg, "d", 0)
	const n = 20
	for i := range n {
		mustDevice(t, s, reg, fmt.Sprintf("gw%d", i), store.GatewayTypeGateway)
	}
	counts := parallel(t, n, func(i int) error {
		return s.BindDevice(ctx(t), byID(fmt.Sprintf("gw%d", i)), byID("d"))
	})
	if counts[nil] != store.MaxGatewaysPerDevice || counts[store.ErrResourceExhausted] != n-store.MaxGatewaysPerDevice {
		t.Errorf("results = %v, want %d successes", counts, store.MaxGatewaysPerDevice)
	}
	got, err := s.ListDevices(ctx(t), store.DeviceQuery{Registry: reg, GatewaysOfDevice: &store.DeviceRef{Registry: reg, ID: "d"}, Limit: 100})
	must(t, err)
	if len(got) != store.MaxGatewaysPerDevice {
		t.Errorf("device bound to %d gateways", len(got))
	}
}

func testConcurrentModifyConfig(t *testing.T, s store.Store) {
	mustRegistry(t, s, reg)
	mustDevice(t, s, reg, "d", 0)
	counts := parallel(t, 10, func(i int) error {
		_, err := s.ModifyConfig(ctx(t), byID("d"), store.ConfigUpdate{VersionToUpdate: 1, Data: []byte{byte(i)}, Now: t0})
		return err
	})
	if counts[nil] != 1 || counts[store.ErrFailedPrecondition] != 9 {
		t.Errorf("results = %v, want 1 success", counts)
	}
	// Without a version, all succeed and versions do not collide.
	counts = parallel(t, 10, func(i int) error {
		_, err := s.ModifyConfig(ctx(t), byID("d"), store.ConfigUpdate{Data: []byte{byte(i)}, Now: t0})
		return err
	})
	if counts[nil] != 10 {
		t.Errorf("results = %v, want 10 successes", counts)
	}
	if v := mustGet(t, s, byID("d")).Config.Version; v != 12 {
		t.Errorf("version = %d, want 12", v)
	}
}

func testConcurrentDeleteRegistry(t *testing.T, s store.Store) {
	for round := range 5 {
		key := store.RegistryKey{Project: "p", Location: "l", ID: fmt.Sprintf("r%d", round)}
		mustRegistry(t, s, key)
		const n = 8
		counts := parallel(t, n+1, func(i int) error {
			if i == n {
				return s.DeleteRegistry(ctx(t), key)
			}
			_, err := s.CreateDevice(ctx(t), &store.Device{Registry: key, ID: fmt.Sprintf("d%d", i)}, t0)
			return err
		})
		if counts[nil]+counts[store.ErrNotFound]+counts[store.ErrFailedPrecondition] != n+1 {
			t.Fatalf("unexpected results %v", counts)
		}
		_, regErr := s.GetRegistry(ctx(t), key)
		devs, err := s.ListDevices(ctx(t), store.DeviceQuery{Registry: key, Limit: 100})
		must(t, err)
		if errors.Is(regErr, store.ErrNotFound) {
			if len(devs) != 0 || counts[store.ErrNotFound] != n {
				t.Errorf("registry deleted but devices %v created (%v)", ids(devs), counts)
			}
		} else {
			must(t, regErr)
			if len(devs) != n || counts[store.ErrFailedPrecondition] != 1 {
				t.Errorf("registry kept with %d devices (%v)", len(devs), counts)
			}
		}
	}
}

func testConcurrentCredentials(t *testing.T, s store.Store) {
	mustRegistry(t, s, reg)
	mustDevice(t, s, reg, "d", 0)
	errFull := errors.New("full")
	counts := parallel(t, 10, func(i int) error {
		_, err := s.UpdateDevice(ctx(t), byID("d"), func(d *store.Device) error {
			if len(d.Credentials) >= store.MaxDeviceCredentials {
				return errFull
			}
			d.Credentials = append(d.Credentials, store.Credential{Format: 2, Key: fmt.Sprint(i)})
			return nil
		})
		return err
	})
	if counts[nil] != store.MaxDeviceCredentials || counts[errFull] != 10-store.MaxDeviceCredentials {
		t.Errorf("results = %v", counts)
	}
	if n := len(mustGet(t, s, byID("d")).Credentials); n != store.MaxDeviceCredentials {
		t.Errorf("device has %d credentials", n)
	}
}

func testConcurrentCreateDevice(t *testing.T, s store.Store) {
	mustRegistry(t, s, reg)
	counts := parallel(t, 10, func(i int) error {
		_, err := s.CreateDevice(ctx(t), &store.Device{Registry: reg, ID: "same"}, t0)
		return err
	})
	if counts[nil] != 1 || counts[store.ErrAlreadyExists] != 9 {
		t.Errorf("results = %v, want 1 success", counts)
	}
	seen := map[uint64]bool{}
	var mu sync.Mutex
	counts = parallel(t, 20, func(i int) error {
		d, err := s.CreateDevice(ctx(t), &store.Device{Registry: reg, ID: fmt.Sprintf("d%d", i)}, t0)
		if err == nil {
			mu.Lock()
			defer mu.Unlock()
			if seen[d.NumID] {
				return fmt.Errorf("numId %d given twice", d.NumID)
			}
			seen[d.NumID] = true
		}
		return err
	})
	if counts[nil] != 20 {
		t.Errorf("results = %v", counts)
	}
}

// testSecrets: a secret is made once and then the same for every caller,
// concurrent first callers included; names are independent.
func testSecrets(t *testing.T, s store.Store) {
	const n = 8
	got := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { got[i], errs[i] = s.Secret(ctx(t), "page-tokens", 32) })
	}
	wg.Wait()
	for i := range n {
		must(t, errs[i])
		if len(got[i]) != 32 || !bytes.Equal(got[i], got[0]) {
			t.Fatalf("caller %d got secret %x, caller 0 got %x", i, got[i], got[0])
		}
	}
	if bytes.Equal(got[0], make([]byte, 32)) {
		t.Error("the secret is all zeros")
	}
	again, err := s.Secret(ctx(t), "page-tokens", 32)
	must(t, err)
	if !bytes.Equal(again, got[0]) {
		t.Errorf("second read %x, first %x", again, got[0])
	}
	other, err := s.Secret(ctx(t), "other", 16)
	must(t, err)
	if len(other) != 16 || bytes.Equal(other, got[0][:16]) {
		t.Errorf("secret 'other' = %x", other)
	}
}

// testPing: a store that serves answers Ping.
func testPing(t *testing.T, s store.Store) {
	if err := s.Ping(ctx(t)); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}
