package resource_test

import (
	"testing"

	"github.com/passerelle-iot/passerelle/pkg/resource"
)

func TestParseDevice(t *testing.T) {
	for _, tc := range []struct {
		name string
		want resource.Device
		ok   bool
	}{
		{"projects/p1/locations/us-central1/registries/reg/devices/dev-1", resource.Device{Registry: resource.Registry{Project: "p1", Location: "us-central1", Registry: "reg"}, Device: "dev-1"}, true},
		{"projects/p1/locations/l/registries/reg/devices/1234567", resource.Device{Registry: resource.Registry{Project: "p1", Location: "l", Registry: "reg"}, Device: "1234567"}, true},
		{"projects/p1/locations/l/registries/reg/devices/", resource.Device{}, false},
		{"projects/p1/locations/l/registries/reg/devices/goog-dev", resource.Device{}, false},
		{"projects/p1/locations/l/registries/r/devices/dev", resource.Device{}, false}, // registry id too short
		{"projects/p1/locations/l/registries/reg/x/devices/dev", resource.Device{}, false},
		{"projects/p1/locations/l/registries/reg", resource.Device{}, false},
		{"projects//locations/l/registries/reg/devices/dev", resource.Device{}, false},
		{"project/p1/locations/l/registries/reg/devices/dev", resource.Device{}, false},
		{"", resource.Device{}, false},
	} {
		got, err := resource.ParseDevice("client_id", tc.name)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseDevice(%q) = %+v, %v; want %+v, ok=%v", tc.name, got, err, tc.want, tc.ok)
		}
	}
}

// BenchmarkParseDevice is the client id step of a connect.
func BenchmarkParseDevice(b *testing.B) {
	const id = "projects/my-project/locations/europe-west1/registries/fleet/devices/dev00042"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := resource.ParseDevice("client_id", id); err != nil {
			b.Fatal(err)
		}
	}
}
