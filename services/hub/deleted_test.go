package hub_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	hubv1 "github.com/passerelle-iot/passerelle/gen/passerelle/hub/v1"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/hub"
)

// TestDeletedGateway: a gateway deleted through the manager while the hub
// holds its connection is dropped at once. The bridge closes the
// connection; the hub asks the manager before connecting again, ends the
// gateway's streams with NOT_FOUND, removes its key from the key store,
// and never connects it again.
func TestDeletedGateway(t *testing.T) {
	// A short backoff: a hub that kept reconnecting would show it at once.
	e := newEnv(t, envConfig{poolOpts: []hub.PoolOption{hub.WithBackoff(10*time.Millisecond, 20*time.Millisecond)}})
	regName, gw := setup(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	regs := e.admin.Projects.Locations.Registries
	keyFile := filepath.Join(e.keysDir, url.QueryEscape(gw)+".pem")
	if _, err := os.Stat(keyFile); err != nil {
		t.Fatalf("the gateway's key: %v", err)
	}

	// A device attached, and the gateway's own config stream open.
	att := testutil.Must(e.hub.Attach(ctx))
	if err := att.Send(&hubv1.AttachRequest{Gateway: gw, DeviceId: "bound"}); err != nil {
		t.Fatal(err)
	}
	if _, err := att.Recv(); err != nil {
		t.Fatalf("Attach: %v", err)
	}
	cfgs := testutil.Must(e.hub.SubscribeConfig(ctx, &hubv1.SubscribeConfigRequest{Gateway: gw}))
	if _, err := cfgs.Recv(); err != nil {
		t.Fatalf("the gateway's config: %v", err)
	}
	connects := e.accepts.Load()

	// Delete the gateway's devices, then the gateway, through the manager.
	testutil.Must(regs.Devices.Delete(regName + "/devices/bound").Do())
	for {
		if _, err := att.Recv(); err != nil {
			break // the device is gone: its Attach stream ends
		}
	}
	testutil.Must(regs.Devices.Delete(gw).Do())

	// The gateway's stream ends with NOT_FOUND, saying why.
	var err error
	for err == nil {
		_, err = cfgs.Recv()
	}
	if status.Code(err) != codes.NotFound {
		t.Fatalf("the gateway's config stream ended with %v, want NOT_FOUND", err)
	}
	wantCode(t, "config stream", err, codes.NotFound, "the gateway was deleted from its registry: "+gw)

	// The pool has dropped it and the key file is gone.
	if v, ok := e.pool.Connection(gw); ok {
		t.Errorf("the pool still holds the gateway: %+v", v)
	}
	if _, err := os.Stat(keyFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the key file is still there: %v", err)
	}
	list := testutil.Must(e.hub.ListGateways(ctx, &hubv1.ListGatewaysRequest{}))
	for _, g := range list.GetGateways() {
		if g.GetName() == gw {
			t.Errorf("ListGateways still lists %s", gw)
		}
	}
	// Not connected again, then or on a later call, which says the
	// gateway was deleted (not that the hub lacks its key).
	_, err = e.hub.PublishEvent(ctx, &hubv1.PublishEventRequest{Gateway: gw, Data: []byte("x")})
	wantCode(t, "a call for the deleted gateway", err, codes.NotFound, "the gateway was deleted from its registry: "+gw)
	if r := errorInfo(err).GetReason(); r != hubv1.ErrorReason_GATEWAY_DELETED.String() {
		t.Errorf("a call for the deleted gateway: reason %s, want GATEWAY_DELETED", r)
	}
	if n := e.accepts.Load(); n != connects {
		t.Errorf("%d connection attempts after the gateway was deleted, want none", n-connects)
	}
	if pv := testutil.Must(e.hub.GetPool(ctx, &hubv1.GetPoolRequest{})); len(pv.GetConnections()) != 0 {
		t.Errorf("pool %v, want no connection", pv)
	}
}

// TestGatewayCheckUnanswered: when the admin API cannot say whether the
// gateway exists, the hub reconnects as before.
func TestGatewayCheckUnanswered(t *testing.T) {
	e := newEnv(t, envConfig{poolOpts: []hub.PoolOption{hub.WithGatewayCheck(failingCheck{})}})
	_, gw := setup(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfgs := testutil.Must(e.hub.SubscribeConfig(ctx, &hubv1.SubscribeConfigRequest{Gateway: gw}))
	if _, err := cfgs.Recv(); err != nil {
		t.Fatal(err)
	}
	// The bridge restarts: the connection is lost, the check fails, the
	// hub reconnects and the stream carries on.
	e.stopBridge()
	e.startBridge()
	testutil.WaitFor(t, 15*time.Second, func() error {
		v, ok := e.pool.Connection(gw)
		if !ok || v.Reconnects == 0 || v.State != hub.StateConnected {
			return fmt.Errorf("connection %+v, %v", v, ok)
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(e.keysDir, url.QueryEscape(gw)+".pem")); err != nil {
		t.Errorf("the key file: %v", err)
	}
}

type failingCheck struct{}

func (failingCheck) GatewayExists(context.Context, string) (bool, error) {
	return false, errors.New("the admin API is down")
}
