package manager

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestFieldMaskParams(t *testing.T) {
	rt, err := deviceManagerRoutes()
	if err != nil {
		t.Fatal(err)
	}
	masks, err := fieldMaskParams(rt)
	if err != nil {
		t.Fatal(err)
	}
	// GetDevice and ListDevices read field_mask; the updates and
	// SetIamPolicy take update_mask.
	if got := strings.Join(slices.Sorted(maps.Keys(masks)), ","); got != "fieldMask,field_mask,updateMask,update_mask" {
		t.Errorf("field mask parameters: %s", got)
	}
}

func TestLowerCamel(t *testing.T) {
	for in, want := range map[string]string{
		"config": "config", "gateway_config": "gatewayConfig", "gatewayConfig": "gatewayConfig",
		"last_heartbeat_time": "lastHeartbeatTime", "num_id": "numId", "x2_y": "x2Y",
		"": "", "gateway_Config": "", "a_": "", "a__b": "", "a_1": "", "1a": "", "a-b": "", "a b": "",
	} {
		got, ok := lowerCamel(in)
		if ok != (want != "") || got != want {
			t.Errorf("lowerCamel(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}
