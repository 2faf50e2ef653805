// Package devicetopic holds the rules of Cloud IoT Core's device topics
// (compat-spec sections 5, 6 and 7): which topics a device or gateway may
// publish and subscribe to, and what an event or command subfolder may
// be. Every front end that takes a topic or a subfolder from outside
// (the MQTT bridge, the hub, the HTTP device bridge, the manager's
// SendCommandToDevice) checks it here, so that all of them agree.
package devicetopic

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/passerelle-iot/passerelle/pkg/resource"
)

// Kind is what a device topic is for.
type Kind int

// The device topics of compat-spec sections 6 and 7.
const (
	Invalid  Kind = iota
	Events        // /devices/{id}/events[/{subfolder...}], publish
	State         // /devices/{id}/state, publish
	Config        // /devices/{id}/config, subscribe
	Commands      // /devices/{id}/commands/#, subscribe
	Errors        // /devices/{gateway}/errors, subscribe
	Attach        // /devices/{id}/attach, publish (gateways)
	Detach        // /devices/{id}/detach, publish (gateways)
)

// Publishable reports whether devices publish on topics of this kind
// (the others are subscribed to).
func (k Kind) Publishable() bool {
	return k == Events || k == State || k == Attach || k == Detach
}

// MaxSubfolderBytes bounds an event or command subfolder. The spec says
// 256 characters for commands and 256 bytes for subfolder matches; bytes
// are the stricter reading and bound the topic a subscriber receives.
const MaxSubfolderBytes = 256

// ErrBadTopic is returned by Parse for a topic outside the Cloud IoT
// device topics.
var ErrBadTopic = errors.New("not a Cloud IoT device topic")

// ErrBadSubfolder is what every error of CheckSubfolder is (errors.Is);
// each one's text is the rule the subfolder breaks, for a caller to put
// after the name of its field.
var ErrBadSubfolder = errors.New("invalid subfolder")

// Topic is a parsed device topic.
type Topic struct {
	Kind     Kind
	DeviceID string
	// SubFolder is the events subfolder ("" for /events).
	SubFolder string
}

// Parse parses a topic name (publish) or topic filter (subscribe). The
// only filter with a wildcard is /devices/{id}/commands/#; everything else
// must match a Cloud IoT topic exactly, with a valid device id, and an
// events subfolder that CheckSubfolder accepts.
func Parse(topic string) (Topic, error) {
	rest, ok := strings.CutPrefix(topic, "/devices/")
	if !ok {
		return Topic{}, ErrBadTopic
	}
	id, rest, ok := strings.Cut(rest, "/")
	if !ok || !resource.ValidID(id) {
		return Topic{}, ErrBadTopic
	}
	t := Topic{DeviceID: id}
	switch rest {
	case "events":
		t.Kind = Events
	case "state":
		t.Kind = State
	case "config":
		t.Kind = Config
	case "commands/#":
		t.Kind = Commands
	case "errors":
		t.Kind = Errors
	case "attach":
		t.Kind = Attach
	case "detach":
		t.Kind = Detach
	default:
		sub, ok := strings.CutPrefix(rest, "events/")
		if !ok || CheckSubfolder(sub) != nil {
			return Topic{}, ErrBadTopic
		}
		t.Kind, t.SubFolder = Events, sub
	}
	return t, nil
}

// CheckSubfolder reports why s is not a valid event or command subfolder,
// or nil. A subfolder is one or more '/'-separated topic levels, at most
// MaxSubfolderBytes of UTF-8 in all, without an empty level, a "." or ".."
// level, an MQTT wildcard ('+', '#') or NUL. "" is not a subfolder: where
// a subfolder is optional, callers leave "" (none) unchecked.
func CheckSubfolder(s string) error {
	switch {
	case s == "":
		return subfolderError("a subfolder may not be empty")
	case len(s) > MaxSubfolderBytes:
		return subfolderError(fmt.Sprintf("a subfolder is at most %d bytes, this one is %d", MaxSubfolderBytes, len(s)))
	case !utf8.ValidString(s):
		return subfolderError("a subfolder is UTF-8 text")
	case strings.ContainsAny(s, "+#\x00"):
		return subfolderError("a subfolder may not contain '+', '#' or NUL")
	}
	for level := range strings.SplitSeq(s, "/") {
		switch level {
		case "":
			return subfolderError("a subfolder may not have an empty level (no leading, trailing or double '/')")
		case ".", "..":
			return subfolderError(`a subfolder level may not be "." or ".."`)
		}
	}
	return nil
}

// subfolderError is a rule a subfolder breaks.
type subfolderError string

func (e subfolderError) Error() string { return string(e) }

func (subfolderError) Is(target error) bool { return target == ErrBadSubfolder }

// Name returns /devices/{id}/{suffix}, the topic of device id for suffix
// ("config", "errors", "events/{subfolder}", ...).
func Name(id, suffix string) string { return "/devices/" + id + "/" + suffix }
