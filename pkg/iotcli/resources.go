package iotcli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// resourceFlags are --region and --registry of a command that names a
// registry or device.
type resourceFlags struct {
	region, registry string
}

func (r *resourceFlags) addRegion(c *cobra.Command) {
	c.Flags().StringVar(&r.region, "region", "", "the cloud region (setting region, PASSERELLE_REGION)")
}

func (r *resourceFlags) addRegistry(c *cobra.Command) {
	r.addRegion(c)
	c.Flags().StringVar(&r.registry, "registry", "", "the device registry")
}

// missingAttribute is gcloud's message for a resource argument that lacks
// a part.
func missingAttribute(kind, attr, flag string) error {
	how := "- provide the argument `--" + flag + "` on the command line"
	if attr == "project" {
		how += "\n- set the property `core/project` (passerelle iot config set project ID)"
	}
	return fmt.Errorf("Error parsing [%s].\nThe [%s] resource is not properly specified.\nFailed to find attribute [%s]. The attribute can be set in the following ways:\n%s", kind, kind, attr, how)
}

// locationName is projects/P/locations/R.
func (a *app) locationName(kind, region string) (string, error) {
	if region == "" {
		var err error
		if region, err = a.setting("region", ""); err != nil {
			return "", err
		}
	}
	if region == "" {
		return "", missingAttribute(kind, "region", "region")
	}
	p, err := a.project()
	if err != nil {
		return "", err
	}
	return "projects/" + p + "/locations/" + region, nil
}

// registryName resolves a registry id (or full name) with --region.
func (a *app) registryName(kind, id, region string) (string, error) {
	if strings.HasPrefix(id, "projects/") {
		if parts := strings.Split(id, "/"); len(parts) == 6 && parts[2] == "locations" && parts[4] == "registries" {
			return id, nil
		}
		return "", fmt.Errorf("invalid registry name [%s]: expected projects/PROJECT/locations/REGION/registries/REGISTRY", id)
	}
	if id == "" {
		return "", missingAttribute(kind, "registry", "registry")
	}
	loc, err := a.locationName(kind, region)
	if err != nil {
		return "", err
	}
	return loc + "/registries/" + id, nil
}

// deviceName resolves a device id or numeric id (or full name) with
// --registry and --region.
func (a *app) deviceName(kind, id string, r resourceFlags) (string, error) {
	if strings.HasPrefix(id, "projects/") {
		if parts := strings.Split(id, "/"); len(parts) == 8 && parts[6] == "devices" {
			return id, nil
		}
		return "", fmt.Errorf("invalid device name [%s]: expected projects/PROJECT/locations/REGION/registries/REGISTRY/devices/DEVICE", id)
	}
	if id == "" {
		return "", missingAttribute(kind, "device", "device")
	}
	reg, err := a.registryName(kind, r.registry, r.region)
	if err != nil {
		return "", err
	}
	return reg + "/devices/" + id, nil
}

// lastSegment is the id at the end of a resource name.
func lastSegment(name string) string { return name[strings.LastIndexByte(name, '/')+1:] }

// exactArgs is cobra.ExactArgs with gcloud's wording for a missing
// positional.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) < len(names) {
			return usagef("", "argument %s: Must be specified.", strings.Join(names[len(args):], " "))
		}
		if len(args) > len(names) {
			return usagef("", "unrecognized arguments: %s", strings.Join(args[len(names):], " "))
		}
		return nil
	}
}

var errNoUpdate = errors.New("Must specify at least one field to update.")
