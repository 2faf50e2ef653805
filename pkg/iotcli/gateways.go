package iotcli

import (
	"fmt"

	"cloud.google.com/go/iot/apiv1/iotpb"
	"github.com/spf13/cobra"
)

func (a *app) gatewaysCommand() *cobra.Command {
	return group("gateways", "Manage gateways and the devices bound to them",
		a.bindCommand("bind", "Bind a device to a gateway"),
		a.bindCommand("unbind", "Unbind a device from a gateway"),
		a.gatewaysList(true), a.gatewaysList(false))
}

// bindCommand is gateways bind and unbind: the device's and the
// gateway's registry and region fall back to each other, as in gcloud.
func (a *app) bindCommand(verb, short string) *cobra.Command {
	var device, deviceRegion, deviceRegistry, gateway, gatewayRegion, gatewayRegistry string
	c := &cobra.Command{Use: verb, Short: short, Args: exactArgs(), RunE: func(c *cobra.Command, args []string) error {
		if device == "" {
			return usagef("device", "Must be specified.")
		}
		if gateway == "" {
			return usagef("gateway", "Must be specified.")
		}
		if deviceRegistry == "" {
			deviceRegistry = gatewayRegistry
		}
		if gatewayRegistry == "" {
			gatewayRegistry = deviceRegistry
		}
		if deviceRegion == "" {
			deviceRegion = gatewayRegion
		}
		if gatewayRegion == "" {
			gatewayRegion = deviceRegion
		}
		if gatewayRegistry != deviceRegistry || gatewayRegion != deviceRegion {
			return fmt.Errorf("The device and the gateway must be in the same registry; got registry [%s] in [%s] and [%s] in [%s].", deviceRegistry, deviceRegion, gatewayRegistry, gatewayRegion)
		}
		parent, err := a.registryName("gateway", gatewayRegistry, gatewayRegion)
		if err != nil {
			return err
		}
		cl, err := a.client(c.Context())
		if err != nil {
			return err
		}
		if verb == "bind" {
			_, err = cl.BindDeviceToGateway(c.Context(), &iotpb.BindDeviceToGatewayRequest{Parent: parent, GatewayId: gateway, DeviceId: device})
		} else {
			_, err = cl.UnbindDeviceFromGateway(c.Context(), &iotpb.UnbindDeviceFromGatewayRequest{Parent: parent, GatewayId: gateway, DeviceId: device})
		}
		return err
	}}
	fs := c.Flags()
	fs.StringVar(&device, "device", "", "the device's id or numeric id (required)")
	fs.StringVar(&deviceRegion, "device-region", "", "the device's region")
	fs.StringVar(&deviceRegistry, "device-registry", "", "the device's registry")
	fs.StringVar(&gateway, "gateway", "", "the gateway's id or numeric id (required)")
	fs.StringVar(&gatewayRegion, "gateway-region", "", "the gateway's region")
	fs.StringVar(&gatewayRegistry, "gateway-registry", "", "the gateway's registry")
	return c
}

// gatewaysList is list-bound-devices (the devices bound to --gateway) and
// list (the gateways of a registry, or those --device is bound to).
func (a *app) gatewaysList(bound bool) *cobra.Command {
	var r resourceFlags
	var l listFlags
	var id string
	use, short, flag := "list", "List gateways (those --device is bound to, if given)", "device"
	if bound {
		use, short, flag = "list-bound-devices", "List the devices bound to a gateway", "gateway"
	}
	c := &cobra.Command{Use: use, Short: short, Args: exactArgs(), RunE: func(c *cobra.Command, args []string) error {
		if err := l.check(); err != nil {
			return err
		}
		if bound && id == "" {
			return usagef("gateway", "Must be specified.")
		}
		parent, err := a.registryName("registry", r.registry, r.region)
		if err != nil {
			return err
		}
		req := &iotpb.ListDevicesRequest{Parent: parent, PageSize: l.pageSize, GatewayListOptions: &iotpb.GatewayListOptions{}}
		switch {
		case bound:
			req.GatewayListOptions.Filter = &iotpb.GatewayListOptions_AssociationsGatewayId{AssociationsGatewayId: id}
		case id != "":
			req.GatewayListOptions.Filter = &iotpb.GatewayListOptions_AssociationsDeviceId{AssociationsDeviceId: id}
		default:
			req.GatewayListOptions.Filter = &iotpb.GatewayListOptions_GatewayType{GatewayType: iotpb.GatewayType_GATEWAY}
		}
		cl, err := a.client(c.Context())
		if err != nil {
			return err
		}
		devices, err := listDevices(c, cl, req)
		if err != nil {
			return err
		}
		return printList(a, devices, l, `table(id, numId)`, nil)
	}}
	r.addRegistry(c)
	l.add(c, true, true)
	c.Flags().StringVar(&id, flag, "", "the "+flag+"'s id or numeric id")
	return c
}
