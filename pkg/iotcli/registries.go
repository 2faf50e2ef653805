package iotcli

import (
	"fmt"
	"os"
	"strconv"

	iot "cloud.google.com/go/iot/apiv1"
	"cloud.google.com/go/iot/apiv1/iotpb"
	"github.com/spf13/cobra"
	"google.golang.org/api/iterator"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

const registriesTable = `table(id, name.segment(3):label=LOCATION, mqttConfig.mqttEnabledState:label=MQTT_ENABLED)`

// registryFlags are the settable fields of registries create and update.
type registryFlags struct {
	mqtt, http  *noBool
	events      []string
	stateTopic  string
	logLevel    string
	publicKey   string
	withDefault bool
}

func (f *registryFlags) add(c *cobra.Command, create bool) {
	fs := c.Flags()
	f.withDefault = create
	f.mqtt = addNoBool(fs, "enable-mqtt-config", create, "whether to allow MQTT connections")
	f.http = addNoBool(fs, "enable-http-config", create, "whether to allow device connections to the HTTP bridge")
	fs.StringArrayVar(&f.events, "event-notification-config", nil, "topic=TOPIC[,subfolder=SUBFOLDER] (repeatable, in order; the one without subfolder last)")
	fs.StringVar(&f.stateTopic, "state-pubsub-topic", "", "Pub/Sub topic for state notifications")
	fs.StringVar(&f.logLevel, "log-level", "", "none, info, error or debug")
	if create {
		fs.StringVar(&f.publicKey, "public-key-path", "", "X.509 CA certificate (PEM) devices' certificates must be signed by")
	}
}

// apply sets the given fields on r and returns their update-mask paths.
func (f *registryFlags) apply(c *cobra.Command, project string, r *iotpb.DeviceRegistry) ([]string, error) {
	var paths []string
	state := func(on bool) (iotpb.MqttState, iotpb.HttpState) {
		if on {
			return iotpb.MqttState_MQTT_ENABLED, iotpb.HttpState_HTTP_ENABLED
		}
		return iotpb.MqttState_MQTT_DISABLED, iotpb.HttpState_HTTP_DISABLED
	}
	if v := f.mqtt.value(); v != nil || f.withDefault {
		m, _ := state(f.mqtt.effective())
		r.MqttConfig = &iotpb.MqttConfig{MqttEnabledState: m}
		paths = append(paths, "mqtt_config")
	}
	if v := f.http.value(); v != nil || f.withDefault {
		_, h := state(f.http.effective())
		r.HttpConfig = &iotpb.HttpConfig{HttpEnabledState: h}
		paths = append(paths, "http_config")
	}
	if c.Flags().Changed("event-notification-config") {
		ev, err := eventConfigs(project, f.events)
		if err != nil {
			return nil, err
		}
		r.EventNotificationConfigs = ev
		paths = append(paths, "event_notification_configs")
	}
	if c.Flags().Changed("state-pubsub-topic") {
		r.StateNotificationConfig = &iotpb.StateNotificationConfig{PubsubTopicName: topicName(project, f.stateTopic)}
		if f.stateTopic == "" {
			r.StateNotificationConfig.PubsubTopicName = ""
		}
		paths = append(paths, "state_notification_config")
	}
	if f.logLevel != "" {
		l, err := logLevel(f.logLevel)
		if err != nil {
			return nil, err
		}
		r.LogLevel = l
		paths = append(paths, "log_level")
	}
	if f.publicKey != "" {
		pem, err := os.ReadFile(f.publicKey)
		if err != nil {
			return nil, fmt.Errorf("Could not read certificate file [%s]: %v", f.publicKey, err)
		}
		r.Credentials = append(r.Credentials, registryCredential(string(pem)))
	}
	return paths, nil
}

func registryCredential(pem string) *iotpb.RegistryCredential {
	return &iotpb.RegistryCredential{Credential: &iotpb.RegistryCredential_PublicKeyCertificate{
		PublicKeyCertificate: &iotpb.PublicKeyCertificate{Format: iotpb.PublicKeyCertificateFormat_X509_CERTIFICATE_PEM, Certificate: pem},
	}}
}

func (a *app) registriesCommand() *cobra.Command {
	return group("registries", "Manage device registries",
		a.registriesCreate(), a.registriesDescribe(), a.registriesList(), a.registriesUpdate(), a.registriesDelete(),
		a.registryCredentialsCommand(), a.registriesGetIAM(), a.registriesSetIAM())
}

// registryCmd is a command on one registry given as the positional
// REGISTRY, or by --registry when positional is false.
func (a *app) registryCmd(use, short string, positional bool, run func(c *cobra.Command, cl *iot.DeviceManagerClient, name string, args []string) error) (*cobra.Command, *resourceFlags) {
	var r resourceFlags
	c := &cobra.Command{Use: use, Short: short}
	c.RunE = func(c *cobra.Command, args []string) error {
		id := r.registry
		if positional {
			id = args[0]
		}
		name, err := a.registryName("registry", id, r.region)
		if err != nil {
			return err
		}
		cl, err := a.client(c.Context())
		if err != nil {
			return err
		}
		return run(c, cl, name, args)
	}
	if positional {
		r.addRegion(c)
	} else {
		r.addRegistry(c)
	}
	return c, &r
}

func (a *app) registriesCreate() *cobra.Command {
	var f registryFlags
	c, _ := a.registryCmd("create REGISTRY", "Create a device registry", true, func(c *cobra.Command, cl *iot.DeviceManagerClient, name string, args []string) error {
		p, err := a.project()
		if err != nil {
			return err
		}
		r := &iotpb.DeviceRegistry{Id: lastSegment(name)}
		if _, err := f.apply(c, p, r); err != nil {
			return err
		}
		parent := name[:len(name)-len("/registries/")-len(r.Id)]
		if _, err := cl.CreateDeviceRegistry(c.Context(), &iotpb.CreateDeviceRegistryRequest{Parent: parent, DeviceRegistry: r}); err != nil {
			return err
		}
		a.status("Created registry [%s].", r.Id)
		return nil
	})
	c.Args = exactArgs("REGISTRY")
	f.add(c, true)
	return c
}

func (a *app) registriesUpdate() *cobra.Command {
	var f registryFlags
	c, _ := a.registryCmd("update REGISTRY", "Update a device registry", true, func(c *cobra.Command, cl *iot.DeviceManagerClient, name string, args []string) error {
		p, err := a.project()
		if err != nil {
			return err
		}
		r := &iotpb.DeviceRegistry{Name: name}
		paths, err := f.apply(c, p, r)
		if err != nil {
			return err
		}
		if len(paths) == 0 {
			return errNoUpdate
		}
		if _, err := cl.UpdateDeviceRegistry(c.Context(), &iotpb.UpdateDeviceRegistryRequest{DeviceRegistry: r, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}}); err != nil {
			return err
		}
		a.status("Updated registry [%s].", lastSegment(name))
		return nil
	})
	c.Args = exactArgs("REGISTRY")
	f.add(c, false)
	return c
}

func (a *app) registriesDescribe() *cobra.Command {
	c, _ := a.registryCmd("describe REGISTRY", "Show a device registry", true, func(c *cobra.Command, cl *iot.DeviceManagerClient, name string, args []string) error {
		r, err := cl.GetDeviceRegistry(c.Context(), &iotpb.GetDeviceRegistryRequest{Name: name})
		if err != nil {
			return err
		}
		return printOne(a, r)
	})
	c.Args = exactArgs("REGISTRY")
	return c
}

func (a *app) registriesDelete() *cobra.Command {
	c, _ := a.registryCmd("delete REGISTRY", "Delete a device registry", true, func(c *cobra.Command, cl *iot.DeviceManagerClient, name string, args []string) error {
		if err := a.confirm(fmt.Sprintf("You are about to delete registry [%s]", lastSegment(name))); err != nil {
			return err
		}
		if err := cl.DeleteDeviceRegistry(c.Context(), &iotpb.DeleteDeviceRegistryRequest{Name: name}); err != nil {
			return err
		}
		a.status("Deleted registry [%s].", lastSegment(name))
		return nil
	})
	c.Args = exactArgs("REGISTRY")
	return c
}

func (a *app) registriesList() *cobra.Command {
	var r resourceFlags
	var l listFlags
	c := &cobra.Command{Use: "list", Short: "List device registries", Args: exactArgs(), RunE: func(c *cobra.Command, args []string) error {
		if err := l.check(); err != nil {
			return err
		}
		parent, err := a.locationName("registry", r.region)
		if err != nil {
			return err
		}
		cl, err := a.client(c.Context())
		if err != nil {
			return err
		}
		it := cl.ListDeviceRegistries(c.Context(), &iotpb.ListDeviceRegistriesRequest{Parent: parent, PageSize: l.pageSize})
		var items []*iotpb.DeviceRegistry
		for {
			reg, err := it.Next()
			if err == iterator.Done {
				break
			}
			if err != nil {
				return err
			}
			items = append(items, reg)
		}
		return printList(a, items, l, registriesTable, nil)
	}}
	r.addRegion(c)
	l.add(c, true, true)
	return c
}

// registryCredentialsCommand is `registries credentials ...`: the
// registry's CA certificates, read and written whole through Get and
// Update.
func (a *app) registryCredentialsCommand() *cobra.Command {
	update := func(c *cobra.Command, cl *iot.DeviceManagerClient, r *iotpb.DeviceRegistry) (*iotpb.DeviceRegistry, error) {
		return cl.UpdateDeviceRegistry(c.Context(), &iotpb.UpdateDeviceRegistryRequest{
			DeviceRegistry: &iotpb.DeviceRegistry{Name: r.Name, Credentials: r.Credentials},
			UpdateMask:     &fieldmaskpb.FieldMask{Paths: []string{"credentials"}},
		})
	}
	// at reads the registry and checks the INDEX argument.
	at := func(c *cobra.Command, cl *iot.DeviceManagerClient, name, arg string) (*iotpb.DeviceRegistry, int, error) {
		r, err := cl.GetDeviceRegistry(c.Context(), &iotpb.GetDeviceRegistryRequest{Name: name})
		if err != nil {
			return nil, 0, err
		}
		i, err := credentialIndex(arg, "registry", r.Id, len(r.Credentials))
		return r, i, err
	}
	var path string
	create, _ := a.registryCmd("create", "Add a CA certificate to a registry", false, func(c *cobra.Command, cl *iot.DeviceManagerClient, name string, args []string) error {
		r, err := cl.GetDeviceRegistry(c.Context(), &iotpb.GetDeviceRegistryRequest{Name: name})
		if err != nil {
			return err
		}
		pem, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("Could not read certificate file [%s]: %v", path, err)
		}
		r.Credentials = append(r.Credentials, registryCredential(string(pem)))
		if _, err := update(c, cl, r); err != nil {
			return err
		}
		a.status("Created credentials for registry [%s].", r.Id)
		return nil
	})
	create.Args = exactArgs()
	create.Flags().StringVar(&path, "path", "", "X.509 certificate (PEM) to add (required)")
	_ = create.MarkFlagRequired("path")

	var l listFlags
	list, _ := a.registryCmd("list", "List a registry's CA certificates", false, func(c *cobra.Command, cl *iot.DeviceManagerClient, name string, args []string) error {
		if err := l.check(); err != nil {
			return err
		}
		r, err := cl.GetDeviceRegistry(c.Context(), &iotpb.GetDeviceRegistryRequest{Name: name})
		if err != nil {
			return err
		}
		return printList(a, r.Credentials, l, `table(index, publicKeyCertificate.format:label=FORMAT, publicKeyCertificate.x509Details.issuer:label=ISSUER, publicKeyCertificate.x509Details.subject:label=SUBJECT, publicKeyCertificate.x509Details.startTime:label=START_TIME, publicKeyCertificate.x509Details.expiryTime:label=EXPIRY_TIME, publicKeyCertificate.x509Details.signatureAlgorithm:label=SIGNATURE_ALGORITHM, publicKeyCertificate.x509Details.publicKeyType:label=PUBLIC_KEY_TYPE)`,
			func(i int, m map[string]any) { m["index"] = strconv.Itoa(i) })
	})
	list.Args = exactArgs()
	l.add(list, false, false)

	describe, _ := a.registryCmd("describe INDEX", "Show a registry's CA certificate", false, func(c *cobra.Command, cl *iot.DeviceManagerClient, name string, args []string) error {
		r, i, err := at(c, cl, name, args[0])
		if err != nil {
			return err
		}
		return printOne(a, r.Credentials[i])
	})
	describe.Args = exactArgs("INDEX")

	del, _ := a.registryCmd("delete INDEX", "Delete a registry's CA certificate", false, func(c *cobra.Command, cl *iot.DeviceManagerClient, name string, args []string) error {
		r, i, err := at(c, cl, name, args[0])
		if err != nil {
			return err
		}
		if err := a.confirm(fmt.Sprintf("This will delete the credential at index [%d] of registry [%s].", i, r.Id)); err != nil {
			return err
		}
		r.Credentials = append(r.Credentials[:i], r.Credentials[i+1:]...)
		if _, err := update(c, cl, r); err != nil {
			return err
		}
		a.status("Deleted credential at index [%d] for registry [%s].", i, r.Id)
		return nil
	})
	del.Args = exactArgs("INDEX")

	clear, _ := a.registryCmd("clear", "Delete all of a registry's CA certificates", false, func(c *cobra.Command, cl *iot.DeviceManagerClient, name string, args []string) error {
		if err := a.confirm(fmt.Sprintf("This will delete ALL CREDENTIALS for registry [%s].", lastSegment(name))); err != nil {
			return err
		}
		r, err := update(c, cl, &iotpb.DeviceRegistry{Name: name})
		if err != nil {
			return err
		}
		if err := printOne(a, r); err != nil {
			return err
		}
		a.status("Cleared all credentials for registry [%s].", lastSegment(name))
		return nil
	})
	clear.Args = exactArgs()
	return group("credentials", "Manage a registry's CA certificates", create, list, describe, del, clear)
}

// credentialIndex parses a 0-based INDEX of one of n credentials.
func credentialIndex(arg, kind, id string, n int) (int, error) {
	i, err := strconv.Atoi(arg)
	if err != nil {
		return 0, usagef("", "argument INDEX: Invalid value for [INDEX]: %s is not an integer", arg)
	}
	if i < 0 || i >= n {
		return 0, fmt.Errorf("Invalid credential index [%d]; %s [%s] has %d credentials. (Indexes are zero-based.))", i, kind, id, n)
	}
	return i, nil
}
