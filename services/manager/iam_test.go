package manager_test

import (
	"bytes"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"cloud.google.com/go/iam/apiv1/iampb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/passerelle-iot/passerelle/pkg/adminauth"
	"github.com/passerelle-iot/passerelle/services/manager"
)

// allPermissions are Cloud IoT's permission names on a registry.
var allPermissions = []string{
	"cloudiot.registries.get", "cloudiot.registries.list", "cloudiot.registries.create", "cloudiot.registries.update",
	"cloudiot.registries.delete", "cloudiot.registries.getIamPolicy", "cloudiot.registries.setIamPolicy",
	"cloudiot.devices.get", "cloudiot.devices.list", "cloudiot.devices.create", "cloudiot.devices.update",
	"cloudiot.devices.delete", "cloudiot.devices.updateConfig", "cloudiot.devices.sendCommand",
	"cloudiot.devices.bindGateway", "cloudiot.devices.unbindGateway",
}

// TestTestIamPermissions asks, over gRPC and REST with Google's client,
// which permissions tokens of each role hold: the answer follows the role.
func TestTestIamPermissions(t *testing.T) {
	tokens := adminauth.NewTokens()
	tok := map[adminauth.Role]string{}
	for _, role := range []adminauth.Role{adminauth.RoleViewer, adminauth.RoleDeviceController, adminauth.RoleProvisioner, adminauth.RoleEditor, adminauth.RoleAdmin} {
		v, err := adminauth.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		if err := tokens.Add("t-"+role.String(), role, adminauth.HashToken(v)); err != nil {
			t.Fatal(err)
		}
		tok[role] = v
	}
	env := newAPIEnv(t, filepath.Join(t.TempDir(), "passerelle.db"), manager.WithTokens(tokens))
	viewerPerms := []string{"cloudiot.registries.get", "cloudiot.registries.list", "cloudiot.registries.getIamPolicy", "cloudiot.devices.get", "cloudiot.devices.list"}
	controllerPerms := append(slices.Clone(viewerPerms), "cloudiot.devices.updateConfig", "cloudiot.devices.sendCommand")
	provisionerPerms := append(slices.Clone(controllerPerms), "cloudiot.devices.create", "cloudiot.devices.update", "cloudiot.devices.delete",
		"cloudiot.devices.bindGateway", "cloudiot.devices.unbindGateway")
	editorPerms := append(slices.Clone(provisionerPerms), "cloudiot.registries.create", "cloudiot.registries.update", "cloudiot.registries.delete")
	want := map[adminauth.Role][]string{
		adminauth.RoleViewer:           viewerPerms,
		adminauth.RoleDeviceController: controllerPerms,
		adminauth.RoleProvisioner:      provisionerPerms,
		adminauth.RoleEditor:           editorPerms,
		adminauth.RoleAdmin:            allPermissions,
	}
	// A registry that does not exist: the answer is the role's, the same
	// on every resource.
	req := &iampb.TestIamPermissionsRequest{
		Resource:    "projects/p1/locations/us-central1/registries/nowhere",
		Permissions: append(slices.Clone(allPermissions), "cloudiot.devices.fly", "pubsub.topics.publish"),
	}
	for role, token := range tok {
		for _, mode := range []string{"grpc", "rest"} {
			c := grpcClient(t, env.addr, token)
			if mode == "rest" {
				c = restClient(t, env.addr, token)
			}
			resp, err := c.TestIamPermissions(t.Context(), req)
			c.Close()
			if err != nil {
				t.Fatalf("%s, %s: %v", role, mode, err)
			}
			got := slices.Sorted(slices.Values(resp.GetPermissions()))
			w := slices.Sorted(slices.Values(want[role]))
			if !slices.Equal(got, w) {
				t.Errorf("%s, %s: permissions\n got %v\nwant %v", role, mode, got, w)
			}
		}
	}

	c := grpcClient(t, env.addr, tok[adminauth.RoleViewer])
	defer c.Close()
	_, err := c.TestIamPermissions(t.Context(), &iampb.TestIamPermissionsRequest{Resource: "projects/p1/registries/r", Permissions: []string{"cloudiot.devices.get"}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "registries/{registry}") {
		t.Errorf("a bad resource: %v, want INVALID_ARGUMENT naming the form", err)
	}
	// Google refuses wildcards rather than answering for every permission.
	for _, p := range []string{"*", "cloudiot.*", "cloudiot.devices.*", ""} {
		_, err := c.TestIamPermissions(t.Context(), &iampb.TestIamPermissionsRequest{
			Resource: req.Resource, Permissions: []string{"cloudiot.devices.get", p},
		})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "permissions[1]") {
			t.Errorf("permission %q: %v, want INVALID_ARGUMENT naming permissions[1]", p, err)
		}
	}
	// At most 100 permissions a call, as Google's.
	many := make([]string, 101)
	for i := range many {
		many[i] = "cloudiot.devices.get"
	}
	if _, err := c.TestIamPermissions(t.Context(), &iampb.TestIamPermissionsRequest{Resource: req.Resource, Permissions: many}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("101 permissions: %v, want INVALID_ARGUMENT", err)
	}
}

// TestConsoleAndPubSubMounts checks which handler serves which path on the
// admin port once a console and the Pub/Sub REST API are mounted: the
// DeviceManager's paths are untouched.
func TestConsoleAndPubSubMounts(t *testing.T) {
	tag := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Served-By", name)
			io.WriteString(w, name+" "+r.URL.Path)
		})
	}
	env := newAPIEnv(t, filepath.Join(t.TempDir(), "passerelle.db"), manager.WithConsole(tag("console")), manager.WithPubSubREST(tag("pubsub")))
	env.createRegistry(t, "reg1")
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		method, path string
		want         string // X-Served-By, "" for the manager
		status       int
		noToken      bool
		auth         string // the Authorization header instead of the token
	}{
		{method: "GET", path: "/v1/projects/p1/topics", status: 401, noToken: true},
		// A token the admin API does not know never reaches the Pub/Sub API
		// or the hub, whatever they would accept on their own ports.
		{method: "GET", path: "/v1/projects/p1/topics", status: 401, auth: "Bearer psl_not-a-token"},
		{method: "POST", path: "/v1/projects/p1/subscriptions/s:pull", status: 401, auth: "Basic eDp5"},
		{method: "POST", path: "/console/hub/passerelle.hub.v1.Hub/GetPool", status: 401, noToken: true},
		{method: "POST", path: "/console/hub/passerelle.hub.v1.Hub/GetPool", status: 401, auth: "Bearer psl_not-a-token"},
		{method: "GET", path: "/console/", want: "console", status: 200, noToken: true},
		{method: "GET", path: "/console/assets/index.js", want: "console", status: 200, noToken: true},
		{method: "GET", path: "/console/", want: "console", status: 200},
		{method: "GET", path: "/console/projects/p1/locations/us-central1/registries/reg1", want: "console", status: 200},
		{method: "POST", path: "/console/hub/passerelle.hub.v1.Hub/GetPool", want: "console", status: 200},
		{method: "GET", path: "/console", want: "console", status: 200},
		{method: "GET", path: "/", want: "", status: http.StatusFound},
		{method: "GET", path: "/v1/projects/p1/topics", want: "pubsub", status: 200},
		{method: "POST", path: "/v1/projects/p1/topics/t:publish", want: "pubsub", status: 200},
		{method: "PUT", path: "/v1/projects/p1/subscriptions/s", want: "pubsub", status: 200},
		{method: "POST", path: "/v1/projects/p1/subscriptions/s:pull", want: "pubsub", status: 200},
		{method: "GET", path: "/v1/projects/p1/snapshots", want: "pubsub", status: 200},
		{method: "GET", path: "/v1/projects/p1/locations/us-central1/registries", want: "", status: 200},
		{method: "GET", path: "/v1/projects/p1/locations/us-central1/registries/reg1/devices", want: "", status: 200},
		{method: "GET", path: "/v1/projects/p1/topicsx", want: "", status: 404},
	} {
		req, err := http.NewRequestWithContext(t.Context(), tc.method, "http://"+env.addr+tc.path, bytes.NewReader(nil))
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case tc.auth != "":
			req.Header.Set("Authorization", tc.auth)
		case !tc.noToken:
			req.Header.Set("Authorization", "Bearer "+env.token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("X-Served-By"); got != tc.want || resp.StatusCode != tc.status {
			t.Errorf("%s %s (%q): served by %q with %d, want %q with %d", tc.method, tc.path, tc.auth, got, resp.StatusCode, tc.want, tc.status)
		}
		if tc.path == "/" && resp.Header.Get("Location") != "/console/" {
			t.Errorf("/ redirects to %q, want /console/", resp.Header.Get("Location"))
		}
	}
}
