package iotcli

import (
	"fmt"
	"os"

	"cloud.google.com/go/iam/apiv1/iampb"
	iot "cloud.google.com/go/iot/apiv1"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

func (a *app) registriesGetIAM() *cobra.Command {
	c, _ := a.registryCmd("get-iam-policy REGISTRY", "Show a registry's IAM policy", true, func(c *cobra.Command, cl *iot.DeviceManagerClient, name string, args []string) error {
		p, err := cl.GetIamPolicy(c.Context(), &iampb.GetIamPolicyRequest{Resource: name})
		if err != nil {
			return err
		}
		return printOne(a, p)
	})
	c.Args = exactArgs("REGISTRY")
	return c
}

func (a *app) registriesSetIAM() *cobra.Command {
	c, _ := a.registryCmd("set-iam-policy REGISTRY POLICY_FILE", "Set a registry's IAM policy from a JSON or YAML file", true, func(c *cobra.Command, cl *iot.DeviceManagerClient, name string, args []string) error {
		raw, err := os.ReadFile(args[1])
		if err != nil {
			return fmt.Errorf("Failed to read policy file [%s]: %v", args[1], err)
		}
		// YAML is a superset of JSON: read either, then hand the JSON
		// form to protojson.
		var v any
		if err := yaml.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("Failed to parse policy file [%s]: %v", args[1], err)
		}
		js, err := jsonOf(v)
		if err != nil {
			return err
		}
		var p iampb.Policy
		if err := protojson.Unmarshal(js, &p); err != nil {
			return fmt.Errorf("Failed to parse policy file [%s]: %v", args[1], err)
		}
		out, err := cl.SetIamPolicy(c.Context(), &iampb.SetIamPolicyRequest{Resource: name, Policy: &p})
		if err != nil {
			return err
		}
		if err := printOne(a, out); err != nil {
			return err
		}
		a.status("Updated IAM policy for registry [%s].", lastSegment(name))
		return nil
	})
	c.Args = exactArgs("REGISTRY", "POLICY_FILE")
	return c
}
