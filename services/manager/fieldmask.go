package manager

import (
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"cloud.google.com/go/iot/apiv1/iotpb"
)

// snakePath turns a field mask path into snake_case: the REST clients send
// camelCase (gatewayConfig.gatewayAuthMethod), gRPC clients snake_case.
func snakePath(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c >= 'A' && c <= 'Z' {
			b.WriteByte('_')
			b.WriteByte(c + 'a' - 'A')
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// maskPaths returns the snake_case paths of a mask; a mask may also come as
// one comma-separated path (as REST query parameters do).
func maskPaths(m *fieldmaskpb.FieldMask) []string {
	var out []string
	for _, p := range m.GetPaths() {
		for _, q := range strings.Split(p, ",") {
			if q = strings.TrimSpace(q); q != "" {
				out = append(out, snakePath(q))
			}
		}
	}
	return out
}

var deviceDescriptor = (&iotpb.Device{}).ProtoReflect().Descriptor()

// deviceMaskFields resolves a read mask to top-level Device fields. A nested
// path (gateway_config.gateway_type) selects its whole top-level field.
func deviceMaskFields(field string, m *fieldmaskpb.FieldMask) ([]protoreflect.FieldDescriptor, error) {
	var fds []protoreflect.FieldDescriptor
	for _, p := range maskPaths(m) {
		top, _, _ := strings.Cut(p, ".")
		fd := deviceDescriptor.Fields().ByName(protoreflect.Name(top))
		if fd == nil {
			return nil, invalidf("'%s' names an unknown device field %q", field, p)
		}
		fds = append(fds, fd)
	}
	return fds, nil
}

// maskDevice returns a device holding only the given fields of full.
func maskDevice(full *iotpb.Device, fds []protoreflect.FieldDescriptor) *iotpb.Device {
	out := &iotpb.Device{}
	src, dst := full.ProtoReflect(), out.ProtoReflect()
	for _, fd := range fds {
		if src.Has(fd) {
			dst.Set(fd, src.Get(fd))
		}
	}
	return out
}
