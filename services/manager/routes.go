package manager

import (
	"fmt"
	"strings"

	"cloud.google.com/go/iot/apiv1/iotpb"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// httpRoute is one google.api.http binding of a DeviceManager method, as
// the transcoder serves it: the REST front end uses it to know, from the
// request line alone, which method a request calls (for its role and its
// body limit), and the discovery document describes the primary ones.
type httpRoute struct {
	method     protoreflect.MethodDescriptor
	fullMethod string // "/google.cloud.iot.v1.DeviceManager/GetDevice"
	httpMethod string // GET, POST, PATCH, DELETE ...
	template   pathTemplate
	body       string // "" (no body), "*" (the whole request) or a field path
	// primary is false for additional_bindings (the device-group paths,
	// which Passerelle has no groups for).
	primary bool
}

// pathTemplate is a parsed google.api.http path template, e.g.
// /v1/{name=projects/*/locations/*/registries/*}:bindDeviceToGateway.
type pathTemplate struct {
	segments []string // literals, "*" or "**", variables expanded
	vars     []pathVar
	verb     string // the custom verb after ':', "" for none
}

// pathVar is a variable of a template: the field it sets and the segments
// it spans.
type pathVar struct {
	fieldPath  string // "name", "device_registry.name"
	start, end int    // segments[start:end]
}

// parsePathTemplate parses a template of the google.api.http grammar:
// "/" segments [":" verb], a segment being a literal, "*", "**" or
// {field.path[=segments]}.
func parsePathTemplate(s string) (pathTemplate, error) {
	var t pathTemplate
	if !strings.HasPrefix(s, "/") {
		return t, fmt.Errorf("path template %q does not start with /", s)
	}
	rest := s[1:]
	if i := verbIndex(rest); i >= 0 {
		t.verb, rest = rest[i+1:], rest[:i]
	}
	for rest != "" {
		var seg string
		if strings.HasPrefix(rest, "{") {
			end := strings.IndexByte(rest, '}')
			if end < 0 {
				return t, fmt.Errorf("path template %q: unclosed variable", s)
			}
			seg, rest = rest[1:end], rest[end+1:]
			field, pattern, ok := strings.Cut(seg, "=")
			if !ok {
				pattern = "*"
			}
			v := pathVar{fieldPath: field, start: len(t.segments)}
			t.segments = append(t.segments, strings.Split(pattern, "/")...)
			v.end = len(t.segments)
			t.vars = append(t.vars, v)
		} else {
			seg, rest, _ = strings.Cut(rest, "/")
			t.segments = append(t.segments, seg)
			continue
		}
		rest = strings.TrimPrefix(rest, "/")
	}
	for _, seg := range t.segments {
		if seg == "" || strings.ContainsAny(seg, "{}=") {
			return t, fmt.Errorf("path template %q: bad segment %q", s, seg)
		}
	}
	return t, nil
}

// verbIndex returns the index of the ':' that starts a template's verb (the
// last one outside braces), or -1.
func verbIndex(s string) int {
	depth, at := 0, -1
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '{':
			depth++
		case '}':
			depth--
		case ':':
			if depth == 0 {
				at = i
			}
		}
	}
	return at
}

// match reports whether a request path matches the template; parts is the
// escaped path without its leading '/', split at every '/'.
func (t *pathTemplate) match(parts []string) bool {
	last := parts[len(parts)-1]
	if t.verb != "" {
		var ok bool
		if last, ok = strings.CutSuffix(last, ":"+t.verb); !ok {
			return false
		}
	}
	for i, seg := range t.segments {
		if seg == "**" {
			return len(parts) > i
		}
		if i >= len(parts) {
			return false
		}
		part := parts[i]
		if i == len(parts)-1 {
			part = last
		}
		if part == "" || seg != "*" && seg != part {
			return false
		}
	}
	return len(parts) == len(t.segments)
}

// routeTable holds every HTTP binding of the DeviceManager service.
type routeTable struct {
	routes   []httpRoute
	byMethod map[string]protoreflect.MethodDescriptor // full method name -> method
}

// deviceManagerRoutes reads the routes from the service's descriptors, the
// same ones the transcoder serves.
func deviceManagerRoutes() (*routeTable, error) {
	sd := iotpb.File_google_cloud_iot_v1_device_manager_proto.Services().ByName("DeviceManager")
	if sd == nil {
		return nil, fmt.Errorf("no DeviceManager service in the iotpb descriptors")
	}
	rt := &routeTable{byMethod: make(map[string]protoreflect.MethodDescriptor)}
	for i := range sd.Methods().Len() {
		md := sd.Methods().Get(i)
		full := "/" + string(sd.FullName()) + "/" + string(md.Name())
		rt.byMethod[full] = md
		rule, ok := proto.GetExtension(md.Options(), annotations.E_Http).(*annotations.HttpRule)
		if !ok || rule == nil {
			continue
		}
		for j, b := range append([]*annotations.HttpRule{rule}, rule.GetAdditionalBindings()...) {
			verb, tmpl := httpRulePattern(b)
			if verb == "" {
				return nil, fmt.Errorf("%s: an http rule without a pattern", full)
			}
			t, err := parsePathTemplate(tmpl)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", full, err)
			}
			rt.routes = append(rt.routes, httpRoute{
				method: md, fullMethod: full, httpMethod: verb,
				template: t, body: b.GetBody(), primary: j == 0,
			})
		}
	}
	return rt, nil
}

// httpRulePattern returns the HTTP method and the path template of a rule.
func httpRulePattern(r *annotations.HttpRule) (method, template string) {
	switch p := r.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		return "GET", p.Get
	case *annotations.HttpRule_Put:
		return "PUT", p.Put
	case *annotations.HttpRule_Post:
		return "POST", p.Post
	case *annotations.HttpRule_Delete:
		return "DELETE", p.Delete
	case *annotations.HttpRule_Patch:
		return "PATCH", p.Patch
	case *annotations.HttpRule_Custom:
		return p.Custom.GetKind(), p.Custom.GetPath()
	}
	return "", ""
}

// methodFor returns the full name of the DeviceManager method an HTTP
// request calls, or "" when it calls none: REST requests by their route,
// Connect and gRPC-Web requests by their path (/package.Service/Method).
// The transcoder decides for itself; this only has to agree with it for
// requests it serves, because the gRPC interceptor still checks the role
// of the method that really runs.
func (rt *routeTable) methodFor(httpMethod, escapedPath string) string {
	if _, ok := rt.byMethod[escapedPath]; ok || publicMethod(escapedPath) {
		return escapedPath
	}
	rest, ok := strings.CutPrefix(escapedPath, "/")
	if !ok {
		return ""
	}
	if httpMethod == "HEAD" {
		httpMethod = "GET"
	}
	parts := strings.Split(rest, "/") // once, for every route
	for i := range rt.routes {
		r := &rt.routes[i]
		if r.httpMethod == httpMethod && r.template.match(parts) {
			return r.fullMethod
		}
	}
	return ""
}
