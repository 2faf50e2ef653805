package manager

import (
	"github.com/passerelle-iot/passerelle/pkg/bus"

	"strconv"
	"strings"

	"cloud.google.com/go/iot/apiv1/iotpb"

	"github.com/passerelle-iot/passerelle/pkg/devicetopic"
	"github.com/passerelle-iot/passerelle/pkg/resource"
	"github.com/passerelle-iot/passerelle/pkg/store"
)

// Limits of compat-spec sections 2, 3 and 5.
const (
	maxEventNotificationConfigs = 10
	maxRegistryCredentials      = 10
	maxSubfolderBytes           = devicetopic.MaxSubfolderBytes
	maxMetadataPairs            = 500
	maxMetadataKeyBytes         = 127
	maxMetadataValueBytes       = 32 * 1024
	maxMetadataTotalBytes       = 256 * 1024 // the total must stay under this
	maxConfigBytes              = 64 * 1024
	maxCommandBytes             = 256 * 1024
	maxListFilterIDs            = 10000
	defaultPageSize             = 1000
	maxPageSize                 = 10000
)

// parseDeviceName parses a device name whose last segment is an id or a numId.
func parseDeviceName(field, name string) (store.DeviceRef, error) {
	if name == "" {
		return store.DeviceRef{}, invalidf("'%s' is required", field)
	}
	d, err := resource.ParseDevice(field, name)
	if err != nil {
		return store.DeviceRef{}, err
	}
	return deviceRef(storeRegistryKey(d.Registry), d.Device), nil
}

// parseRegistryName parses a registry name into a store key.
func parseRegistryName(field, name string) (store.RegistryKey, error) {
	if name == "" {
		return store.RegistryKey{}, invalidf("'%s' is required", field)
	}
	r, err := resource.ParseRegistry(field, name)
	if err != nil {
		return store.RegistryKey{}, err
	}
	return storeRegistryKey(r), nil
}

func storeRegistryKey(r resource.Registry) store.RegistryKey {
	return store.RegistryKey{Project: r.Project, Location: r.Location, ID: r.Registry}
}

// deviceRef names a device by id, or by numId when the segment is numeric
// (ids start with a letter, so the two never collide).
func deviceRef(reg store.RegistryKey, idOrNum string) store.DeviceRef {
	if n, ok := (resource.Device{Device: idOrNum}).NumID(); ok {
		return store.DeviceRef{Registry: reg, NumID: n}
	}
	return store.DeviceRef{Registry: reg, ID: idOrNum}
}

// parseDeviceIDOrNum validates a bare device id or numId given in field.
func parseDeviceIDOrNum(reg store.RegistryKey, field, v string) (store.DeviceRef, error) {
	if v == "" {
		return store.DeviceRef{}, invalidf("'%s' is required", field)
	}
	if v[0] >= '0' && v[0] <= '9' {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			return store.DeviceRef{}, invalidf("The format of '%s' is invalid: %q is neither a device id nor a numeric id", field, v)
		}
		return store.DeviceRef{Registry: reg, NumID: n}, nil
	}
	if err := resource.CheckID(field, v); err != nil {
		return store.DeviceRef{}, err
	}
	return store.DeviceRef{Registry: reg, ID: v}, nil
}

// checkTopic checks a Pub/Sub topic name projects/{p}/topics/{t} by the
// bus's rule, so that every topic the manager accepts is one the bridges can
// publish to.
func checkTopic(field, name string) error {
	if _, err := bus.TopicSubject(name); err != nil {
		return invalidf("'%s' must be projects/{project}/topics/{topic} with a topic id of 3 to 255 characters of [a-zA-Z0-9-._~%%+] that starts with a letter and not with 'goog', got %q", field, name)
	}
	return nil
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func isIDChar(c byte) bool {
	return isLetter(c) || c >= '0' && c <= '9' || strings.IndexByte("-._+~%", c) >= 0
}

// checkSubfolderMatches checks an event notification subfolder: one or more
// '/'-separated levels of id characters, at most 256 bytes.
func checkSubfolderMatches(field, s string) error {
	if len(s) > maxSubfolderBytes {
		return invalidf("'%s' is %d bytes, at most %d are allowed", field, len(s), maxSubfolderBytes)
	}
	for _, level := range strings.Split(s, "/") {
		if level == "" {
			return invalidf("'%s' is invalid: empty level in %q (no leading, trailing or double '/')", field, s)
		}
		for i := 0; i < len(level); i++ {
			if !isIDChar(level[i]) {
				return invalidf("'%s' is invalid: %q has a character outside [a-zA-Z0-9-._+~%%/]", field, s)
			}
		}
	}
	return nil
}

// checkCommandSubfolder checks SendCommandToDevice's subfolder by the
// device topic rules (pkg/devicetopic): the device receives it appended to
// /devices/{id}/commands/.
func checkCommandSubfolder(s string) error {
	if s == "" {
		return nil
	}
	if err := devicetopic.CheckSubfolder(s); err != nil {
		return invalidf("'subfolder' is invalid: %v", err)
	}
	return nil
}

func checkLogLevel(field string, l iotpb.LogLevel) error {
	switch l {
	case iotpb.LogLevel_LOG_LEVEL_UNSPECIFIED, iotpb.LogLevel_NONE, iotpb.LogLevel_ERROR, iotpb.LogLevel_INFO, iotpb.LogLevel_DEBUG:
		return nil
	}
	return invalidf("'%s' has an unknown value %d", field, int32(l))
}

func checkEnum(field string, v, max int32) error {
	if v < 0 || v > max {
		return invalidf("'%s' has an unknown value %d", field, v)
	}
	return nil
}

// checkMetadata applies Cloud IoT's metadata rules.
func checkMetadata(md map[string]string) error {
	if len(md) > maxMetadataPairs {
		return invalidf("'device.metadata' has %d pairs, at most %d are allowed", len(md), maxMetadataPairs)
	}
	total := 0
	for k, v := range md {
		if len(k) == 0 || len(k) > maxMetadataKeyBytes || !isLetter(k[0]) {
			return invalidf("The metadata key %q is invalid: keys are 1 to %d characters of [a-zA-Z0-9-_] starting with a letter", k, maxMetadataKeyBytes)
		}
		for i := 0; i < len(k); i++ {
			c := k[i]
			if !(isLetter(c) || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return invalidf("The metadata key %q is invalid: keys are 1 to %d characters of [a-zA-Z0-9-_] starting with a letter", k, maxMetadataKeyBytes)
			}
		}
		if len(v) > maxMetadataValueBytes {
			return invalidf("The value of metadata key %q is %d bytes, at most %d are allowed", k, len(v), maxMetadataValueBytes)
		}
		total += len(k) + len(v)
	}
	if total >= maxMetadataTotalBytes {
		return invalidf("'device.metadata' totals %d bytes, it must stay under %d", total, maxMetadataTotalBytes)
	}
	return nil
}

// pageSize applies the paging rules of compat-spec 3 to a requested size.
func pageSize(n int32) (int, error) {
	switch {
	case n < 0:
		return 0, invalidf("'page_size' must not be negative, got %d", n)
	case n == 0:
		return defaultPageSize, nil
	case n > maxPageSize:
		return 0, invalidf("'page_size' is %d, at most %d are allowed", n, maxPageSize)
	}
	return int(n), nil
}
