package bridge

import (
	"errors"
	"strings"

	"github.com/passerelle-iot/passerelle/pkg/resource"
)

// TopicKind is what a Cloud IoT device topic is for.
type TopicKind int

// The topics of compat-spec sections 6 and 7.
const (
	TopicInvalid  TopicKind = iota
	TopicEvents             // /devices/{id}/events[/{subfolder...}], publish
	TopicState              // /devices/{id}/state, publish
	TopicConfig             // /devices/{id}/config, subscribe
	TopicCommands           // /devices/{id}/commands/#, subscribe
	TopicErrors             // /devices/{gateway}/errors, subscribe
	TopicAttach             // /devices/{id}/attach, publish (gateways)
	TopicDetach             // /devices/{id}/detach, publish (gateways)
)

// MaxSubfolderBytes bounds an event or command subfolder.
const MaxSubfolderBytes = 256

// ErrBadTopic is returned by ParseTopic for a topic outside the Cloud IoT
// device topics.
var ErrBadTopic = errors.New("not a Cloud IoT device topic")

// Topic is a parsed device topic.
type Topic struct {
	Kind     TopicKind
	DeviceID string
	// SubFolder is the events subfolder ("" for /events).
	SubFolder string
}

// Publishable reports whether devices publish on topics of this kind
// (the others are subscribed to).
func (k TopicKind) Publishable() bool {
	return k == TopicEvents || k == TopicState || k == TopicAttach || k == TopicDetach
}

// ParseTopic parses a topic name (publish) or topic filter (subscribe).
// The only filter with a wildcard is /devices/{id}/commands/#; everything
// else must match a Cloud IoT topic exactly, with a valid device id, and an
// events subfolder of at most MaxSubfolderBytes without empty levels,
// wildcards or NUL.
func ParseTopic(topic string) (Topic, error) {
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
		t.Kind = TopicEvents
	case "state":
		t.Kind = TopicState
	case "config":
		t.Kind = TopicConfig
	case "commands/#":
		t.Kind = TopicCommands
	case "errors":
		t.Kind = TopicErrors
	case "attach":
		t.Kind = TopicAttach
	case "detach":
		t.Kind = TopicDetach
	default:
		sub, ok := strings.CutPrefix(rest, "events/")
		if !ok || !validSubfolder(sub) {
			return Topic{}, ErrBadTopic
		}
		t.Kind, t.SubFolder = TopicEvents, sub
	}
	return t, nil
}

func validSubfolder(s string) bool {
	if s == "" || len(s) > MaxSubfolderBytes || s[0] == '/' || s[len(s)-1] == '/' || strings.Contains(s, "//") {
		return false
	}
	return !strings.ContainsAny(s, "+#\x00")
}

// deviceTopic returns /devices/{id}/{suffix}.
func deviceTopic(id, suffix string) string { return "/devices/" + id + "/" + suffix }
