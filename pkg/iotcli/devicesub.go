package iotcli

import (
	"fmt"
	"os"
	"strconv"

	iot "cloud.google.com/go/iot/apiv1"
	"cloud.google.com/go/iot/apiv1/iotpb"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// deviceCredentialsCommand is `devices credentials ...`, read and written
// whole through GetDevice and UpdateDevice.
func (a *app) deviceCredentialsCommand() *cobra.Command {
	get := func(c *cobra.Command, cl *iot.DeviceManagerClient, name string) (*iotpb.Device, error) {
		return cl.GetDevice(c.Context(), &iotpb.GetDeviceRequest{Name: name, FieldMask: &fieldmaskpb.FieldMask{Paths: []string{"id", "credentials"}}})
	}
	update := func(c *cobra.Command, cl *iot.DeviceManagerClient, name string, creds []*iotpb.DeviceCredential) (*iotpb.Device, error) {
		return cl.UpdateDevice(c.Context(), &iotpb.UpdateDeviceRequest{
			Device:     &iotpb.Device{Name: name, Credentials: creds},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"credentials"}},
		})
	}
	// at reads the device and checks the INDEX argument.
	at := func(c *cobra.Command, cl *iot.DeviceManagerClient, name, arg string) (*iotpb.Device, int, error) {
		d, err := get(c, cl, name)
		if err != nil {
			return nil, 0, err
		}
		i, err := credentialIndex(arg, "device", d.Id, len(d.Credentials))
		return d, i, err
	}
	var path, typ, exp string
	create := a.deviceCmd("create", "Add a public key to a device", false, func(c *cobra.Command, cl *iot.DeviceManagerClient, name string, args []string) error {
		cred, err := credential("type", path, typ, exp)
		if err != nil {
			return err
		}
		d, err := get(c, cl, name)
		if err != nil {
			return err
		}
		if len(d.Credentials) >= 3 {
			return fmt.Errorf("Too many public keys specified: [%d] given, but maximum [3] allowed.", len(d.Credentials)+1)
		}
		if _, err := update(c, cl, name, append(d.Credentials, cred)); err != nil {
			return err
		}
		a.status("Created credentials for device [%s].", d.Id)
		return nil
	})
	create.Args = exactArgs()
	create.Flags().StringVar(&path, "path", "", "public key or certificate file (required)")
	create.Flags().StringVar(&typ, "type", "", "key type (required): "+keyTypeChoices)
	create.Flags().StringVar(&exp, "expiration-time", "", "when the key stops authenticating (2020-12-30T10:50:22Z)")
	_ = create.MarkFlagRequired("path")
	_ = create.MarkFlagRequired("type")

	var l listFlags
	list := a.deviceCmd("list", "List a device's public keys", false, func(c *cobra.Command, cl *iot.DeviceManagerClient, name string, args []string) error {
		if err := l.check(); err != nil {
			return err
		}
		d, err := get(c, cl, name)
		if err != nil {
			return err
		}
		return printList(a, d.Credentials, l, `table(index, publicKey.format:label=FORMAT, expirationTime)`,
			func(i int, m map[string]any) { m["index"] = strconv.Itoa(i) })
	})
	list.Args = exactArgs()
	l.add(list, false, false)

	describe := a.deviceCmd("describe INDEX", "Show a device's public key", false, func(c *cobra.Command, cl *iot.DeviceManagerClient, name string, args []string) error {
		d, i, err := at(c, cl, name, args[0])
		if err != nil {
			return err
		}
		return printOne(a, d.Credentials[i])
	})
	describe.Args = exactArgs("INDEX")

	var newExp string
	upd := a.deviceCmd("update INDEX", "Change a public key's expiration time", false, func(c *cobra.Command, cl *iot.DeviceManagerClient, name string, args []string) error {
		if newExp == "" {
			return errNoUpdate
		}
		ts, err := timestamp("expiration-time", newExp)
		if err != nil {
			return err
		}
		d, i, err := at(c, cl, name, args[0])
		if err != nil {
			return err
		}
		d.Credentials[i].ExpirationTime = ts
		out, err := update(c, cl, name, d.Credentials)
		if err != nil {
			return err
		}
		if err := printOne(a, out); err != nil {
			return err
		}
		a.status("Updated credentials for device [%s].", d.Id)
		return nil
	})
	upd.Args = exactArgs("INDEX")
	upd.Flags().StringVar(&newExp, "expiration-time", "", "the key's new expiration time")

	del := a.deviceCmd("delete INDEX", "Delete a device's public key", false, func(c *cobra.Command, cl *iot.DeviceManagerClient, name string, args []string) error {
		d, i, err := at(c, cl, name, args[0])
		if err != nil {
			return err
		}
		if err := a.confirm(fmt.Sprintf("This will delete the credential at index [%d] of device [%s].", i, d.Id)); err != nil {
			return err
		}
		if _, err := update(c, cl, name, append(d.Credentials[:i], d.Credentials[i+1:]...)); err != nil {
			return err
		}
		a.status("Deleted credentials for device [%s].", d.Id)
		return nil
	})
	del.Args = exactArgs("INDEX")

	clear := a.deviceCmd("clear", "Delete all of a device's public keys", false, func(c *cobra.Command, cl *iot.DeviceManagerClient, name string, args []string) error {
		if err := a.confirm(fmt.Sprintf("This will delete ALL CREDENTIALS for device [%s].", lastSegment(name))); err != nil {
			return err
		}
		out, err := update(c, cl, name, nil)
		if err != nil {
			return err
		}
		if err := printOne(a, out); err != nil {
			return err
		}
		a.status("Cleared all credentials for device [%s].", out.Id)
		return nil
	})
	clear.Args = exactArgs()
	return group("credentials", "Manage a device's public keys", create, list, describe, upd, del, clear)
}

func (a *app) configsCommand() *cobra.Command {
	var data, file string
	var version int64
	upd := a.deviceCmd("update", "Write a new configuration version for a device", false, func(c *cobra.Command, cl *iot.DeviceManagerClient, name string, args []string) error {
		payload, err := dataOrFile(c, "config", data, file)
		if err != nil {
			return err
		}
		if _, err := cl.ModifyCloudToDeviceConfig(c.Context(), &iotpb.ModifyCloudToDeviceConfigRequest{Name: name, VersionToUpdate: version, BinaryData: payload}); err != nil {
			return err
		}
		a.status("Updated configuration for device [%s].", lastSegment(name))
		return nil
	})
	upd.Args = exactArgs()
	upd.Flags().StringVar(&data, "config-data", "", "the configuration, as a string")
	upd.Flags().StringVar(&file, "config-file", "", "a file holding the configuration")
	upd.Flags().Int64Var(&version, "version-to-update", 0, "write only if the latest version is this one (0: unconditionally)")

	var l listFlags
	list := a.deviceCmd("list", "List a device's configuration versions, newest first", false, func(c *cobra.Command, cl *iot.DeviceManagerClient, name string, args []string) error {
		if err := l.check(); err != nil {
			return err
		}
		resp, err := cl.ListDeviceConfigVersions(c.Context(), &iotpb.ListDeviceConfigVersionsRequest{Name: name, NumVersions: int32(min(l.limit, 10))})
		if err != nil {
			return err
		}
		return printList(a, resp.DeviceConfigs, l, `table(version, cloudUpdateTime, deviceAckTime)`, nil)
	})
	list.Args = exactArgs()
	l.add(list, false, false)

	describe := a.deviceCmd("describe", "Show a device's latest configuration", false, func(c *cobra.Command, cl *iot.DeviceManagerClient, name string, args []string) error {
		d, err := cl.GetDevice(c.Context(), &iotpb.GetDeviceRequest{Name: name, FieldMask: &fieldmaskpb.FieldMask{Paths: []string{"config"}}})
		if err != nil {
			return err
		}
		return printOne(a, d.GetConfig())
	})
	describe.Args = exactArgs()

	value := a.deviceCmd("get-value", "Print a device's latest configuration data", false, func(c *cobra.Command, cl *iot.DeviceManagerClient, name string, args []string) error {
		d, err := cl.GetDevice(c.Context(), &iotpb.GetDeviceRequest{Name: name, FieldMask: &fieldmaskpb.FieldMask{Paths: []string{"config"}}})
		if err != nil {
			return err
		}
		_, err = a.io.Stdout.Write(d.GetConfig().GetBinaryData())
		return err
	})
	value.Args = exactArgs()
	return group("configs", "Manage device configurations", upd, list, describe, value)
}

func (a *app) statesCommand() *cobra.Command {
	var l listFlags
	list := a.deviceCmd("list", "List a device's states, newest first", false, func(c *cobra.Command, cl *iot.DeviceManagerClient, name string, args []string) error {
		if err := l.check(); err != nil {
			return err
		}
		resp, err := cl.ListDeviceStates(c.Context(), &iotpb.ListDeviceStatesRequest{Name: name, NumStates: int32(min(l.limit, 10))})
		if err != nil {
			return err
		}
		return printList(a, resp.DeviceStates, l, `table(updateTime)`, nil)
	})
	list.Args = exactArgs()
	l.add(list, false, false)
	return group("states", "Show device states", list)
}

func (a *app) commandsCommand() *cobra.Command {
	var data, file, subfolder string
	send := a.deviceCmd("send", "Send a command to a connected device", false, func(c *cobra.Command, cl *iot.DeviceManagerClient, name string, args []string) error {
		payload, err := dataOrFile(c, "command", data, file)
		if err != nil {
			return err
		}
		_, err = cl.SendCommandToDevice(c.Context(), &iotpb.SendCommandToDeviceRequest{Name: name, BinaryData: payload, Subfolder: subfolder})
		return err
	})
	send.Args = exactArgs()
	send.Flags().StringVar(&data, "command-data", "", "the command, as a string")
	send.Flags().StringVar(&file, "command-file", "", "a file holding the command")
	send.Flags().StringVar(&subfolder, "subfolder", "", "the subfolder the command is sent to")
	return group("commands", "Send commands to devices", send)
}

// dataOrFile is the payload of --KIND-data or --KIND-file: exactly one
// must be given.
func dataOrFile(c *cobra.Command, kind, data, file string) ([]byte, error) {
	dataFlag := kind + "-data"
	both := fmt.Sprintf("Exactly one of (--%s-data | --%s-file) must be specified.", kind, kind)
	switch {
	case c.Flags().Changed(dataFlag) && file != "":
		return nil, usagef(dataFlag, "%s", both)
	case c.Flags().Changed(dataFlag):
		return []byte(data), nil
	case file != "":
		raw, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("Could not read %s file [%s]: %v", kind, file, err)
		}
		return raw, nil
	}
	return nil, usagef(dataFlag, "%s", both)
}
