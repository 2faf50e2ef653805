package iotcli

import (
	"fmt"
	"strconv"
	"strings"

	iot "cloud.google.com/go/iot/apiv1"
	"cloud.google.com/go/iot/apiv1/iotpb"
	"github.com/spf13/cobra"
	"google.golang.org/api/iterator"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// devicesTable is gcloud's (from 417) default devices list format.
const devicesTable = `table(id, numId, blocked:optional, name:optional, credentials.len():label=CREDENTIALS:optional, ` +
	`lastHeartbeatTime:optional, lastEventTime:optional, lastStateTime:optional, lastConfigAckTime:optional, ` +
	`lastConfigSendTime:optional, lastErrorTime:optional, lastErrorStatus.code:label=LAST_ERROR_STATUS:optional, ` +
	`config.version:label=CONFIG:optional, state.updateTime:label=STATE:optional, logLevel:optional, metadata:optional, ` +
	`gatewayConfig.gatewayType:label=GATEWAY_TYPE:optional, gatewayConfig.gatewayAuthMethod:label=GATEWAY_AUTH_METHOD:optional)`

func (a *app) devicesCommand() *cobra.Command {
	return group("devices", "Manage devices",
		a.devicesCreate(), a.devicesDescribe(), a.devicesList(), a.devicesUpdate(), a.devicesDelete(),
		a.deviceCredentialsCommand(), a.configsCommand(), a.statesCommand(), a.commandsCommand(), a.gatewaysCommand())
}

// deviceCmd is a command on one device, the positional DEVICE or --device.
func (a *app) deviceCmd(use, short string, positional bool, run func(c *cobra.Command, cl *iot.DeviceManagerClient, name string, args []string) error) *cobra.Command {
	var r resourceFlags
	var device string
	c := &cobra.Command{Use: use, Short: short}
	c.RunE = func(c *cobra.Command, args []string) error {
		id := device
		if positional {
			id = args[0]
		}
		name, err := a.deviceName("device", id, r)
		if err != nil {
			return err
		}
		cl, err := a.client(c.Context())
		if err != nil {
			return err
		}
		return run(c, cl, name, args)
	}
	r.addRegistry(c)
	if !positional {
		c.Flags().StringVar(&device, "device", "", "the device: its id or numeric id")
	}
	return c
}

// deviceFlags are the settable fields of devices create and update.
type deviceFlags struct {
	keys                  []string
	blocked               *noBool
	meta, metaFile        string
	devType, auth, logLvl string
	fromCSV               string
	concurrency           int
}

func (f *deviceFlags) add(c *cobra.Command, create bool) {
	fs := c.Flags()
	f.blocked = addNoBool(fs, "blocked", false, "whether the device is blocked from connecting")
	fs.StringVar(&f.meta, "metadata", "", "KEY=VALUE,... (replaces all metadata)")
	fs.StringVar(&f.metaFile, "metadata-from-file", "", "KEY=PATH,...: values read from files")
	fs.StringVar(&f.logLvl, "log-level", "", "none, info, error or debug")
	fs.StringVar(&f.auth, "auth-method", "", "gateways: association-only, device-auth-token-only or association-and-device-auth-token")
	if create {
		fs.StringArrayVar(&f.keys, "public-key", nil, "path=PATH,type=TYPE[,expiration-time=TIME] (repeatable, at most 3); TYPE: "+keyTypeChoices)
		fs.StringVar(&f.devType, "device-type", "", "gateway or non-gateway")
		fs.StringVar(&f.fromCSV, "from-csv", "", "create many devices from a CSV file (columns id, public_key, key_type, blocked, log_level, device_type, auth_method, metadata.KEY...)")
		fs.IntVar(&f.concurrency, "concurrency", 8, "--from-csv: calls in flight at once")
	}
}

// apply sets the given fields on d and returns their update-mask paths.
func (f *deviceFlags) apply(c *cobra.Command, d *iotpb.Device, create bool) ([]string, error) {
	var paths []string
	if create {
		if len(f.keys) > 3 {
			return nil, fmt.Errorf("Too many public keys specified: [%d] given, but maximum [3] allowed.", len(f.keys))
		}
		for _, k := range f.keys {
			cred, err := publicKey(k)
			if err != nil {
				return nil, err
			}
			d.Credentials = append(d.Credentials, cred)
		}
		if f.devType != "" {
			t, err := deviceType(f.devType)
			if err != nil {
				return nil, err
			}
			d.GatewayConfig = &iotpb.GatewayConfig{GatewayType: t}
		}
	}
	if v := f.blocked.value(); v != nil {
		d.Blocked = *v
		paths = append(paths, "blocked")
	}
	if c.Flags().Changed("metadata") || c.Flags().Changed("metadata-from-file") {
		m, err := metadata(f.meta, f.metaFile)
		if err != nil {
			return nil, err
		}
		d.Metadata = m
		paths = append(paths, "metadata")
	}
	if f.logLvl != "" {
		l, err := logLevel(f.logLvl)
		if err != nil {
			return nil, err
		}
		d.LogLevel = l
		paths = append(paths, "log_level")
	}
	if f.auth != "" {
		m, err := authMethod(f.auth)
		if err != nil {
			return nil, err
		}
		if create && d.GetGatewayConfig().GetGatewayType() != iotpb.GatewayType_GATEWAY {
			return nil, fmt.Errorf("auth_method can only be set on gateway devices.")
		}
		if d.GatewayConfig == nil {
			d.GatewayConfig = &iotpb.GatewayConfig{}
		}
		d.GatewayConfig.GatewayAuthMethod = m
		paths = append(paths, "gateway_config.gateway_auth_method")
	}
	return paths, nil
}

func (a *app) devicesCreate() *cobra.Command {
	var f deviceFlags
	var r resourceFlags
	c := &cobra.Command{Use: "create DEVICE", Short: "Create a device (or many, with --from-csv)"}
	c.Args = func(c *cobra.Command, args []string) error {
		if f.fromCSV != "" {
			return exactArgs()(c, args)
		}
		return exactArgs("DEVICE")(c, args)
	}
	c.RunE = func(c *cobra.Command, args []string) error {
		if f.fromCSV != "" {
			return a.createFromCSV(c, r, f)
		}
		name, err := a.deviceName("device", args[0], r)
		if err != nil {
			return err
		}
		d := &iotpb.Device{Id: args[0]}
		if _, err := f.apply(c, d, true); err != nil {
			return err
		}
		cl, err := a.client(c.Context())
		if err != nil {
			return err
		}
		parent := name[:strings.LastIndex(name, "/devices/")]
		if _, err := cl.CreateDevice(c.Context(), &iotpb.CreateDeviceRequest{Parent: parent, Device: d}); err != nil {
			return err
		}
		a.status("Created device [%s].", d.Id)
		return nil
	}
	r.addRegistry(c)
	f.add(c, true)
	return c
}

func (a *app) devicesUpdate() *cobra.Command {
	var f deviceFlags
	c := a.deviceCmd("update DEVICE", "Update a device", true, func(c *cobra.Command, cl *iot.DeviceManagerClient, name string, args []string) error {
		d := &iotpb.Device{Name: name}
		paths, err := f.apply(c, d, false)
		if err != nil {
			return err
		}
		if len(paths) == 0 {
			return errNoUpdate
		}
		if _, err := cl.UpdateDevice(c.Context(), &iotpb.UpdateDeviceRequest{Device: d, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}}); err != nil {
			return err
		}
		a.status("Updated device [%s].", args[0])
		return nil
	})
	c.Args = exactArgs("DEVICE")
	f.add(c, false)
	return c
}

func (a *app) devicesDescribe() *cobra.Command {
	c := a.deviceCmd("describe DEVICE", "Show a device", true, func(c *cobra.Command, cl *iot.DeviceManagerClient, name string, args []string) error {
		d, err := cl.GetDevice(c.Context(), &iotpb.GetDeviceRequest{Name: name})
		if err != nil {
			return err
		}
		return printOne(a, d)
	})
	c.Args = exactArgs("DEVICE")
	return c
}

func (a *app) devicesDelete() *cobra.Command {
	c := a.deviceCmd("delete DEVICE", "Delete a device", true, func(c *cobra.Command, cl *iot.DeviceManagerClient, name string, args []string) error {
		if err := a.confirm(fmt.Sprintf("You are about to delete device [%s]", args[0])); err != nil {
			return err
		}
		if err := cl.DeleteDevice(c.Context(), &iotpb.DeleteDeviceRequest{Name: name}); err != nil {
			return err
		}
		a.status("Deleted device [%s].", args[0])
		return nil
	})
	c.Args = exactArgs("DEVICE")
	return c
}

// listDevices reads every page of a ListDevices call.
func listDevices(c *cobra.Command, cl *iot.DeviceManagerClient, req *iotpb.ListDevicesRequest) ([]*iotpb.Device, error) {
	it := cl.ListDevices(c.Context(), req)
	var out []*iotpb.Device
	for {
		d, err := it.Next()
		if err == iterator.Done {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
}

func (a *app) devicesList() *cobra.Command {
	var r resourceFlags
	var l listFlags
	var ids, numIDs []string
	var devType string
	var mask []string
	c := &cobra.Command{Use: "list", Short: "List devices", Args: exactArgs(), RunE: func(c *cobra.Command, args []string) error {
		if err := l.check(); err != nil {
			return err
		}
		parent, err := a.registryName("registry", r.registry, r.region)
		if err != nil {
			return err
		}
		req := &iotpb.ListDevicesRequest{Parent: parent, DeviceIds: ids, PageSize: l.pageSize}
		for _, n := range numIDs {
			v, err := strconv.ParseUint(n, 10, 64)
			if err != nil {
				return usagef("device-num-ids", "Invalid value [%s]: expected comma-separated numeric ids", n)
			}
			req.DeviceNumIds = append(req.DeviceNumIds, v)
		}
		if devType != "" {
			t, err := deviceType(devType)
			if err != nil {
				return err
			}
			req.GatewayListOptions = &iotpb.GatewayListOptions{Filter: &iotpb.GatewayListOptions_GatewayType{GatewayType: t}}
		}
		req.FieldMask = &fieldmaskpb.FieldMask{}
		for _, m := range mask {
			req.FieldMask.Paths = append(req.FieldMask.Paths, snake(m))
		}
		cl, err := a.client(c.Context())
		if err != nil {
			return err
		}
		devices, err := listDevices(c, cl, req)
		if err != nil {
			return err
		}
		return printList(a, devices, l, devicesTable, nil)
	}}
	r.addRegistry(c)
	l.add(c, true, true)
	fs := c.Flags()
	fs.StringSliceVar(&ids, "device-ids", nil, "only these device ids (comma-separated)")
	fs.StringSliceVar(&numIDs, "device-num-ids", nil, "only these numeric ids (comma-separated)")
	fs.StringVar(&devType, "device-type", "", "only gateway or non-gateway devices")
	fs.StringSliceVar(&mask, "device-field-mask", []string{"blocked", "gatewayConfig"}, "fields to read besides id and numId (comma-separated; * for all)")
	return c
}

// snake turns gatewayConfig into gateway_config, as field masks want.
func snake(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}
