package manager

import (
	"fmt"
	"net/http"
	"net/url"
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

// Field masks in REST query parameters (?fieldMask=..., ?updateMask=...):
// Google's front end took their paths in snake_case (as Google's Node
// client sends them: fieldMask=config%2Cgateway_config) and in lowerCamel
// alike. The transcoder reads a mask parameter with protojson, which takes
// lowerCamel only, and its error message for the others was cut short. So
// the REST front end rewrites mask parameters to lowerCamel first, and
// answers what it cannot read itself.

// fieldMaskParams returns the query parameter names (JSON and proto forms,
// dotted for nested fields) that are a google.protobuf.FieldMask in some
// DeviceManager request. It fails when one of them is something else in
// another request, since parameters are rewritten by name alone.
func fieldMaskParams(rt *routeTable) (map[string]bool, error) {
	masks, others := map[string]bool{}, map[string]bool{}
	var walk func(md protoreflect.MessageDescriptor, jsonPrefix, protoPrefix string, depth int)
	walk = func(md protoreflect.MessageDescriptor, jsonPrefix, protoPrefix string, depth int) {
		for i := range md.Fields().Len() {
			fd := md.Fields().Get(i)
			jsonName, protoName := jsonPrefix+fd.JSONName(), protoPrefix+string(fd.Name())
			switch {
			case fd.Message() != nil && fd.Message().FullName() == "google.protobuf.FieldMask":
				masks[jsonName], masks[protoName] = true, true
			case fd.Message() != nil && !fd.IsList() && !fd.IsMap() && depth < 4:
				walk(fd.Message(), jsonName+".", protoName+".", depth+1)
			default:
				others[jsonName], others[protoName] = true, true
			}
		}
	}
	for _, md := range rt.byMethod {
		walk(md.Input(), "", "", 0)
	}
	for name := range masks {
		if others[name] {
			return nil, fmt.Errorf("query parameter %q is a field mask in one request and not in another", name)
		}
	}
	return masks, nil
}

// normalizeMaskParams returns r with its field mask parameters in the form
// the transcoder reads (comma-separated lowerCamel paths, one parameter
// for repeated ones), or an INVALID_ARGUMENT error naming the path it
// cannot read.
func normalizeMaskParams(r *http.Request, masks map[string]bool) (*http.Request, error) {
	if r.URL.RawQuery == "" {
		return r, nil
	}
	var kept, order []string
	paths := map[string][]string{}
	for pair := range strings.SplitSeq(r.URL.RawQuery, "&") {
		rawKey, rawValue, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(rawKey)
		if err != nil || !masks[key] {
			kept = append(kept, pair)
			continue
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil {
			return nil, invalidf("Invalid field mask parameter %q: its value is not properly percent-encoded", key)
		}
		ps, err := lowerCamelMask(key, value)
		if err != nil {
			return nil, err
		}
		if _, seen := paths[key]; !seen {
			order = append(order, key)
		}
		paths[key] = append(paths[key], ps...)
	}
	if len(order) == 0 {
		return r, nil
	}
	for _, key := range order {
		kept = append(kept, url.QueryEscape(key)+"="+url.QueryEscape(strings.Join(paths[key], ",")))
	}
	r2 := r.Clone(r.Context())
	r2.URL.RawQuery = strings.Join(kept, "&")
	return r2, nil
}

// lowerCamelMask splits a mask parameter's value into its paths, each in
// lowerCamel: gateway_config.gateway_auth_method becomes
// gatewayConfig.gatewayAuthMethod, gatewayConfig stays.
func lowerCamelMask(param, value string) ([]string, error) {
	var out []string
	for p := range strings.SplitSeq(value, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		segs := strings.Split(p, ".")
		for i, s := range segs {
			c, ok := lowerCamel(s)
			if !ok {
				return nil, invalidf("Invalid field mask parameter %q: %q is not a field path; "+
					"name fields as in gatewayConfig.gatewayAuthMethod or gateway_config.gateway_auth_method, separated by commas", param, p)
			}
			segs[i] = c
		}
		out = append(out, strings.Join(segs, "."))
	}
	return out, nil
}

// lowerCamel turns a field name in snake_case or lowerCamel into
// lowerCamel, as protojson names it. ok is false for what is no field
// name, or has an underscore that lowerCamel cannot carry (before a digit,
// a capital, another underscore, or at the end).
func lowerCamel(s string) (string, bool) {
	if s == "" {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_':
			if i+1 >= len(s) || s[i+1] < 'a' || s[i+1] > 'z' {
				return "", false
			}
			i++
			b.WriteByte(s[i] - 'a' + 'A')
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9' && i > 0:
			b.WriteByte(c)
		default:
			return "", false
		}
	}
	return b.String(), true
}
