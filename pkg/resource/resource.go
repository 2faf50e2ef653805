// Package resource parses and formats Cloud IoT Core resource names
// (projects/{p}/locations/{l}/registries/{r}/devices/{d}) and checks the id
// rules of compat-spec section 1. It is shared by the manager (API paths),
// the bridge (MQTT client ids) and the hub (gateway names).
package resource

import (
	"fmt"
	"strconv"
	"strings"
)

// Registry names a device registry.
type Registry struct {
	Project  string
	Location string
	Registry string
}

// Device names a device; Device is the device id, or its numeric id in
// decimal when the name was written with one.
type Device struct {
	Registry
	Device string
}

// Name returns projects/{p}/locations/{l}.
func LocationName(project, location string) string {
	return "projects/" + project + "/locations/" + location
}

// Name returns the registry's resource name.
func (r Registry) Name() string {
	return LocationName(r.Project, r.Location) + "/registries/" + r.Registry
}

// Name returns the device's resource name.
func (d Device) Name() string { return d.Registry.Name() + "/devices/" + d.Device }

// NumID reports the device's numeric id when the name used one.
func (d Device) NumID() (uint64, bool) {
	if d.Device == "" || d.Device[0] < '0' || d.Device[0] > '9' {
		return 0, false
	}
	n, err := strconv.ParseUint(d.Device, 10, 64)
	return n, err == nil
}

// Error is a malformed name or id; Field names the request field.
type Error struct {
	Field string
	Msg   string
}

func (e *Error) Error() string { return e.Msg }

func errorf(field, format string, args ...any) *Error {
	return &Error{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// ParseLocation parses projects/{p}/locations/{l}.
func ParseLocation(field, name string) (project, location string, err error) {
	parts := strings.Split(name, "/")
	if len(parts) != 4 || parts[0] != "projects" || parts[2] != "locations" {
		return "", "", errorf(field, "'%s' must have the form projects/{project}/locations/{location}, got %q", field, name)
	}
	if err := checkProject(field, parts[1]); err != nil {
		return "", "", err
	}
	if err := checkLocation(field, parts[3]); err != nil {
		return "", "", err
	}
	return parts[1], parts[3], nil
}

// ParseRegistry parses projects/{p}/locations/{l}/registries/{r}.
func ParseRegistry(field, name string) (Registry, error) {
	// Split without allocating: the bridge parses a client id per connect.
	var parts [6]string
	n := splitN(name, parts[:])
	if n != 6 || parts[0] != "projects" || parts[2] != "locations" || parts[4] != "registries" {
		return Registry{}, errorf(field, "'%s' must have the form projects/{project}/locations/{location}/registries/{registry}, got %q", field, name)
	}
	if err := checkProject(field, parts[1]); err != nil {
		return Registry{}, err
	}
	if err := checkLocation(field, parts[3]); err != nil {
		return Registry{}, err
	}
	if !ValidID(parts[5]) {
		return Registry{}, errorf(field, "The registry id in '%s' is invalid: %q", field, parts[5])
	}
	return Registry{Project: parts[1], Location: parts[3], Registry: parts[5]}, nil
}

// ParseDevice parses projects/{p}/locations/{l}/registries/{r}/devices/{d},
// where {d} is a device id or a numeric id.
func ParseDevice(field, name string) (Device, error) {
	i := strings.LastIndex(name, "/devices/")
	if i < 0 {
		return Device{}, errorf(field, "'%s' must have the form projects/{project}/locations/{location}/registries/{registry}/devices/{device}, got %q", field, name)
	}
	reg, err := ParseRegistry(field, name[:i])
	if err != nil {
		return Device{}, errorf(field, "'%s' must have the form projects/{project}/locations/{location}/registries/{registry}/devices/{device}, got %q", field, name)
	}
	dev := name[i+len("/devices/"):]
	d := Device{Registry: reg, Device: dev}
	if _, ok := d.NumID(); ok {
		return d, nil
	}
	if !ValidID(dev) {
		return Device{}, errorf(field, "The device id in '%s' is invalid: %q", field, dev)
	}
	return d, nil
}

// splitN splits s at each "/" into parts and returns how many pieces s
// has (more than len(parts) when it has too many to hold).
func splitN(s string, parts []string) int {
	n := 0
	for {
		head, rest, found := strings.Cut(s, "/")
		if n < len(parts) {
			parts[n] = head
		}
		n++
		if !found {
			return n
		}
		s = rest
	}
}

// ValidID reports whether id is a valid registry or device id:
// [a-zA-Z][-a-zA-Z0-9._+~%]+, 3 to 255 characters, not starting with "goog".
func ValidID(id string) bool {
	if len(id) < 3 || len(id) > 255 || strings.HasPrefix(id, "goog") {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i == 0:
			return false
		case c >= '0' && c <= '9', c == '-', c == '.', c == '_', c == '+', c == '~', c == '%':
		default:
			return false
		}
	}
	return true
}

// CheckID returns an error naming field when id is not a valid id.
func CheckID(field, id string) error {
	if id == "" {
		return errorf(field, "'%s' is required", field)
	}
	if !ValidID(id) {
		return errorf(field, "The format of '%s' is invalid: ids are 3 to 255 characters of [a-zA-Z0-9-._+~%%], start with a letter and must not start with 'goog', got %q", field, id)
	}
	return nil
}

func checkProject(field, p string) error {
	if p == "" || len(p) > 100 || strings.ContainsAny(p, "/ ") {
		return errorf(field, "The project in '%s' is invalid: %q", field, p)
	}
	return nil
}

func checkLocation(field, l string) error {
	if l == "" || len(l) > 63 {
		return errorf(field, "The location in '%s' is invalid: %q (use lower-case letters, digits and '-')", field, l)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return errorf(field, "The location in '%s' is invalid: %q (use lower-case letters, digits and '-')", field, l)
		}
	}
	return nil
}
