package hub_test

import (
	_ "embed"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/passerelle-iot/passerelle/services/hub"
)

//go:embed serviceconfig.json
var serviceConfigFile string

// TestServiceConfig: the shipped file and the constant say the same, and
// gRPC takes it.
func TestServiceConfig(t *testing.T) {
	if serviceConfigFile != hub.ServiceConfig {
		t.Fatal("serviceconfig.json and hub.ServiceConfig differ: change both")
	}
	conn, err := grpc.NewClient("127.0.0.1:1", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(hub.ServiceConfig))
	if err != nil {
		t.Fatalf("gRPC refuses the service config: %v", err)
	}
	_ = conn.Close()
}
