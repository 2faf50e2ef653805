package devicetopic_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/passerelle-iot/passerelle/pkg/devicetopic"
	"github.com/passerelle-iot/passerelle/pkg/resource"
)

func TestParse(t *testing.T) {
	long := strings.Repeat("a", devicetopic.MaxSubfolderBytes)
	tests := []struct {
		topic string
		want  devicetopic.Topic // Kind Invalid: must fail
	}{
		{"/devices/dev-1/events", devicetopic.Topic{Kind: devicetopic.Events, DeviceID: "dev-1"}},
		{"/devices/dev-1/events/a", devicetopic.Topic{Kind: devicetopic.Events, DeviceID: "dev-1", SubFolder: "a"}},
		{"/devices/dev-1/events/a/b.c", devicetopic.Topic{Kind: devicetopic.Events, DeviceID: "dev-1", SubFolder: "a/b.c"}},
		{"/devices/dev-1/events/a/...", devicetopic.Topic{Kind: devicetopic.Events, DeviceID: "dev-1", SubFolder: "a/..."}},
		{"/devices/dev-1/events/" + long, devicetopic.Topic{Kind: devicetopic.Events, DeviceID: "dev-1", SubFolder: long}},
		{"/devices/dev-1/state", devicetopic.Topic{Kind: devicetopic.State, DeviceID: "dev-1"}},
		{"/devices/dev-1/config", devicetopic.Topic{Kind: devicetopic.Config, DeviceID: "dev-1"}},
		{"/devices/dev-1/commands/#", devicetopic.Topic{Kind: devicetopic.Commands, DeviceID: "dev-1"}},
		{"/devices/gw-1/errors", devicetopic.Topic{Kind: devicetopic.Errors, DeviceID: "gw-1"}},
		{"/devices/dev-1/attach", devicetopic.Topic{Kind: devicetopic.Attach, DeviceID: "dev-1"}},
		{"/devices/dev-1/detach", devicetopic.Topic{Kind: devicetopic.Detach, DeviceID: "dev-1"}},

		{"", devicetopic.Topic{}},
		{"devices/dev-1/events", devicetopic.Topic{}},
		{"/devices/dev-1", devicetopic.Topic{}},
		{"/devices/dev-1/", devicetopic.Topic{}},
		{"/devices//events", devicetopic.Topic{}},
		{"/devices/1dev/events", devicetopic.Topic{}},   // ids start with a letter
		{"/devices/d/events", devicetopic.Topic{}},      // too short
		{"/devices/goog1/events", devicetopic.Topic{}},  // reserved prefix
		{"/devices/+/events", devicetopic.Topic{}},      // wildcard device
		{"/devices/dev-1/events/", devicetopic.Topic{}}, // empty subfolder
		{"/devices/dev-1/events//a", devicetopic.Topic{}},
		{"/devices/dev-1/events/a/", devicetopic.Topic{}},
		{"/devices/dev-1/events/#", devicetopic.Topic{}},
		{"/devices/dev-1/events/a+b", devicetopic.Topic{}},
		{"/devices/dev-1/events/a\x00", devicetopic.Topic{}},
		{"/devices/dev-1/events/..", devicetopic.Topic{}},
		{"/devices/dev-1/events/../../x", devicetopic.Topic{}},
		{"/devices/dev-1/events/a/./b", devicetopic.Topic{}},
		{"/devices/dev-1/events/a\xff", devicetopic.Topic{}},
		{"/devices/dev-1/events/" + long + "a", devicetopic.Topic{}},
		{"/devices/dev-1/commands", devicetopic.Topic{}},
		{"/devices/dev-1/commands/sub", devicetopic.Topic{}}, // one subfolder is not supported
		{"/devices/dev-1/commands/+", devicetopic.Topic{}},
		{"/devices/dev-1/config/x", devicetopic.Topic{}},
		{"/devices/dev-1/state/x", devicetopic.Topic{}},
		{"/devices/dev-1/#", devicetopic.Topic{}},
		{"#", devicetopic.Topic{}},
		{"$SYS/broker/uptime", devicetopic.Topic{}},
	}
	for _, tc := range tests {
		got, err := devicetopic.Parse(tc.topic)
		if tc.want.Kind == devicetopic.Invalid {
			if err == nil {
				t.Errorf("Parse(%q) = %+v, want an error", tc.topic, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tc.topic, got, err, tc.want)
		}
	}
}

func TestCheckSubfolder(t *testing.T) {
	tests := []struct {
		sub  string
		rule string // "" when valid
	}{
		{"a", ""},
		{"a/b/c", ""},
		{"a.b/.c/d../...", ""},
		{"données/été", ""},
		{strings.Repeat("a", devicetopic.MaxSubfolderBytes), ""},

		{"", "empty"},
		{strings.Repeat("a", devicetopic.MaxSubfolderBytes+1), "at most 256 bytes, this one is 257"},
		{strings.Repeat("é", devicetopic.MaxSubfolderBytes/2+1), "at most 256"}, // bytes, not characters
		{"a\xffb", "UTF-8"},
		{"a/+", "'+'"},
		{"#", "'+'"},
		{"a\x00", "NUL"},
		{"/a", "empty level"},
		{"a/", "empty level"},
		{"a//b", "empty level"},
		{".", `"."`},
		{"..", `".."`},
		{"../../x", `".."`},
		{"a/./b", `"."`},
		{"a/..", `".."`},
	}
	for _, tc := range tests {
		err := devicetopic.CheckSubfolder(tc.sub)
		if tc.rule == "" {
			if err != nil {
				t.Errorf("CheckSubfolder(%q) = %v, want nil", tc.sub, err)
			}
			continue
		}
		if !errors.Is(err, devicetopic.ErrBadSubfolder) || !strings.Contains(err.Error(), tc.rule) {
			t.Errorf("CheckSubfolder(%q) = %v, want an ErrBadSubfolder naming %q", tc.sub, err, tc.rule)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"/devices/dev-1/events", "/devices/dev-1/events/a/b", "/devices/gw-1/errors",
		"/devices/dev-1/commands/#", "/devices/x/y/z", "/devices/abc/events//", "/devices/abc/events/a/../b", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		got, err := devicetopic.Parse(topic)
		if err != nil {
			return
		}
		// Whatever is accepted names one device and rebuilds to itself.
		if !resource.ValidID(got.DeviceID) {
			t.Fatalf("device id %q from %q", got.DeviceID, topic)
		}
		if strings.ContainsAny(got.SubFolder, "+#\x00") || len(got.SubFolder) > devicetopic.MaxSubfolderBytes {
			t.Fatalf("subfolder %q from %q", got.SubFolder, topic)
		}
		for level := range strings.SplitSeq(got.SubFolder, "/") {
			if got.SubFolder != "" && (level == "" || level == "." || level == "..") {
				t.Fatalf("level %q accepted in %q", level, topic)
			}
		}
		if got.Kind != devicetopic.Events && got.SubFolder != "" {
			t.Fatalf("subfolder on kind %d", got.Kind)
		}
		if !strings.HasPrefix(topic, "/devices/"+got.DeviceID+"/") {
			t.Fatalf("%q does not start with the device id %q", topic, got.DeviceID)
		}
		if got.Kind != devicetopic.Commands && strings.Contains(topic[len("/devices/")+len(got.DeviceID):], "#") {
			t.Fatalf("wildcard accepted in %q", topic)
		}
		if got.Kind == devicetopic.Events {
			suffix := "events"
			if got.SubFolder != "" {
				suffix += "/" + got.SubFolder
			}
			if devicetopic.Name(got.DeviceID, suffix) != topic {
				t.Fatalf("%q rebuilds to %q", topic, devicetopic.Name(got.DeviceID, suffix))
			}
		}
	})
}

func ExampleCheckSubfolder() {
	for _, sub := range []string{"sensors/temperature", "../../x", "a/#"} {
		fmt.Printf("%q: %v\n", sub, devicetopic.CheckSubfolder(sub))
	}
	// Output:
	// "sensors/temperature": <nil>
	// "../../x": a subfolder level may not be "." or ".."
	// "a/#": a subfolder may not contain '+', '#' or NUL
}
