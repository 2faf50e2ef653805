package bridge_test

import (
	"strings"
	"testing"

	"github.com/passerelle-iot/passerelle/pkg/resource"
	"github.com/passerelle-iot/passerelle/services/bridge"
)

func TestParseTopic(t *testing.T) {
	long := strings.Repeat("a", bridge.MaxSubfolderBytes)
	tests := []struct {
		topic string
		want  bridge.Topic // Kind TopicInvalid: must fail
	}{
		{"/devices/dev-1/events", bridge.Topic{Kind: bridge.TopicEvents, DeviceID: "dev-1"}},
		{"/devices/dev-1/events/a", bridge.Topic{Kind: bridge.TopicEvents, DeviceID: "dev-1", SubFolder: "a"}},
		{"/devices/dev-1/events/a/b.c", bridge.Topic{Kind: bridge.TopicEvents, DeviceID: "dev-1", SubFolder: "a/b.c"}},
		{"/devices/dev-1/events/" + long, bridge.Topic{Kind: bridge.TopicEvents, DeviceID: "dev-1", SubFolder: long}},
		{"/devices/dev-1/state", bridge.Topic{Kind: bridge.TopicState, DeviceID: "dev-1"}},
		{"/devices/dev-1/config", bridge.Topic{Kind: bridge.TopicConfig, DeviceID: "dev-1"}},
		{"/devices/dev-1/commands/#", bridge.Topic{Kind: bridge.TopicCommands, DeviceID: "dev-1"}},
		{"/devices/gw-1/errors", bridge.Topic{Kind: bridge.TopicErrors, DeviceID: "gw-1"}},
		{"/devices/dev-1/attach", bridge.Topic{Kind: bridge.TopicAttach, DeviceID: "dev-1"}},
		{"/devices/dev-1/detach", bridge.Topic{Kind: bridge.TopicDetach, DeviceID: "dev-1"}},

		{"", bridge.Topic{}},
		{"devices/dev-1/events", bridge.Topic{}},
		{"/devices/dev-1", bridge.Topic{}},
		{"/devices/dev-1/", bridge.Topic{}},
		{"/devices//events", bridge.Topic{}},
		{"/devices/1dev/events", bridge.Topic{}},   // ids start with a letter
		{"/devices/d/events", bridge.Topic{}},      // too short
		{"/devices/goog1/events", bridge.Topic{}},  // reserved prefix
		{"/devices/+/events", bridge.Topic{}},      // wildcard device
		{"/devices/dev-1/events/", bridge.Topic{}}, // empty subfolder
		{"/devices/dev-1/events//a", bridge.Topic{}},
		{"/devices/dev-1/events/a/", bridge.Topic{}},
		{"/devices/dev-1/events/#", bridge.Topic{}},
		{"/devices/dev-1/events/a+b", bridge.Topic{}},
		{"/devices/dev-1/events/a\x00", bridge.Topic{}},
		{"/devices/dev-1/events/" + long + "a", bridge.Topic{}},
		{"/devices/dev-1/commands", bridge.Topic{}},
		{"/devices/dev-1/commands/sub", bridge.Topic{}}, // one subfolder is not supported
		{"/devices/dev-1/commands/+", bridge.Topic{}},
		{"/devices/dev-1/config/x", bridge.Topic{}},
		{"/devices/dev-1/state/x", bridge.Topic{}},
		{"/devices/dev-1/#", bridge.Topic{}},
		{"#", bridge.Topic{}},
		{"$SYS/broker/uptime", bridge.Topic{}},
	}
	for _, tc := range tests {
		got, err := bridge.ParseTopic(tc.topic)
		if tc.want.Kind == bridge.TopicInvalid {
			if err == nil {
				t.Errorf("ParseTopic(%q) = %+v, want an error", tc.topic, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseTopic(%q) = %+v, %v; want %+v", tc.topic, got, err, tc.want)
		}
	}
}

func FuzzParseTopic(f *testing.F) {
	for _, s := range []string{"/devices/dev-1/events", "/devices/dev-1/events/a/b", "/devices/gw-1/errors",
		"/devices/dev-1/commands/#", "/devices/x/y/z", "/devices/abc/events//", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		got, err := bridge.ParseTopic(topic)
		if err != nil {
			return
		}
		// Whatever is accepted names one device and rebuilds to itself.
		if !resource.ValidID(got.DeviceID) {
			t.Fatalf("device id %q from %q", got.DeviceID, topic)
		}
		if strings.ContainsAny(got.SubFolder, "+#\x00") || len(got.SubFolder) > bridge.MaxSubfolderBytes {
			t.Fatalf("subfolder %q from %q", got.SubFolder, topic)
		}
		if got.Kind != bridge.TopicEvents && got.SubFolder != "" {
			t.Fatalf("subfolder on kind %d", got.Kind)
		}
		if !strings.HasPrefix(topic, "/devices/"+got.DeviceID+"/") {
			t.Fatalf("%q does not start with the device id %q", topic, got.DeviceID)
		}
		if got.Kind != bridge.TopicCommands && strings.Contains(topic[len("/devices/")+len(got.DeviceID):], "#") {
			t.Fatalf("wildcard accepted in %q", topic)
		}
	})
}
