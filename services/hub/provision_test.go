package hub_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"

	"google.golang.org/api/cloudiot/v1"
	"google.golang.org/api/option"

	"github.com/passerelle-iot/passerelle/pkg/store/sqlstore"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/hub"
	"github.com/passerelle-iot/passerelle/services/manager"
)

// TestDeviceConfigs reads configs of devices named by id and by numId
// through the manager's REST API, as SubscribeConfig's version lookups do.
func TestDeviceConfigs(t *testing.T) {
	ctx := context.Background()
	log := testutil.Logger(t)
	st := testutil.Must(sqlstore.Open(ctx, log, t.TempDir()+"/db.sqlite"))
	t.Cleanup(func() { _ = st.Close() })
	lis := testutil.Must(net.Listen("tcp", "127.0.0.1:0"))
	serve(t, func(ctx context.Context) error {
		return manager.New(log, st, manager.WithInsecureNoAuth()).Serve(ctx, lis)
	})
	prov := testutil.Must(hub.DialManager(ctx, "http://"+lis.Addr().String(), ""))
	admin := testutil.Must(cloudiot.NewService(ctx, option.WithEndpoint("http://"+lis.Addr().String()+"/"), option.WithHTTPClient(newHTTPClient())))
	reg := testutil.Must(admin.Projects.Locations.Registries.Create(benchParent, &cloudiot.DeviceRegistry{Id: "versions"}).Do())
	var ids []string
	nums := map[string]string{}
	for i := range 3 {
		id := fmt.Sprintf("dev-%d", i)
		d := testutil.Must(admin.Projects.Locations.Registries.Devices.Create(reg.Name, &cloudiot.Device{Id: id}).Do())
		ids = append(ids, id)
		nums[id] = strconv.FormatUint(d.NumId, 10)
	}
	testutil.Must(admin.Projects.Locations.Registries.Devices.ModifyCloudToDeviceConfig(reg.Name+"/devices/dev-1",
		&cloudiot.ModifyCloudToDeviceConfigRequest{BinaryData: "b24="}).Do()) // "on"

	got, err := prov.DeviceConfigs(ctx, reg.Name, []string{"dev-0", nums["dev-1"], "dev-2", "nobody"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]hub.DeviceConfig{
		"dev-0":       {Version: 1, Data: []byte{}},
		nums["dev-1"]: {Version: 2, Data: []byte("on")},
		"dev-2":       {Version: 1, Data: []byte{}},
	}
	if len(got) != len(want) {
		t.Errorf("got configs of %d devices, want %d: %+v", len(got), len(want), got)
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || g.Version != w.Version || string(g.Data) != string(w.Data) {
			t.Errorf("config of %s = %+v (found %v), want %+v", k, g, ok, w)
		}
	}
	if _, err := prov.DeviceConfigs(ctx, benchParent+"/registries/none", ids); err == nil {
		t.Error("configs of an unknown registry: no error")
	}
}
