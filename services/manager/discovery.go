package manager

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The discovery document describes the REST API for clients that build
// themselves from one at run time, such as Google's Python client
// (googleapiclient.discovery.build('cloudiot', 'v1',
// discoveryServiceUrl=...)). It is generated from the google.api.http
// rules and the message descriptors the transcoder serves, in the shape of
// Google's discovery documents: resources nested by the collections of each
// path, method ids like cloudiot.projects.locations.registries.devices.list,
// parameters in the path and the query, request and response schemas.
// It is built once; rootUrl and baseUrl are the address each request
// reached.

// Where the discovery document is served: Google's two URL forms.
const (
	discoveryV2Path = "/$discovery/rest"                    // ?version=v1
	discoveryV1Path = "/discovery/v1/apis/cloudiot/v1/rest" // the googleapis.com directory form
	// discoveryMaxAge is how long a client or cache may keep the document.
	discoveryMaxAge = 5 * time.Minute
)

type discoveryDocument struct {
	Kind             string                        `json:"kind"`
	DiscoveryVersion string                        `json:"discoveryVersion"`
	ID               string                        `json:"id"`
	Name             string                        `json:"name"`
	CanonicalName    string                        `json:"canonicalName"`
	Version          string                        `json:"version"`
	Title            string                        `json:"title"`
	Description      string                        `json:"description"`
	Protocol         string                        `json:"protocol"`
	ServicePath      string                        `json:"servicePath"`
	BasePath         string                        `json:"basePath"`
	BatchPath        string                        `json:"batchPath"`
	Parameters       map[string]*discoveryParam    `json:"parameters"`
	Schemas          map[string]*jsonSchema        `json:"schemas"`
	Resources        map[string]*discoveryResource `json:"resources"`
}

type discoveryResource struct {
	Methods   map[string]*discoveryMethod   `json:"methods,omitempty"`
	Resources map[string]*discoveryResource `json:"resources,omitempty"`
}

type discoveryMethod struct {
	ID             string                     `json:"id"`
	Description    string                     `json:"description,omitempty"`
	HTTPMethod     string                     `json:"httpMethod"`
	Path           string                     `json:"path"`
	FlatPath       string                     `json:"flatPath"`
	Parameters     map[string]*discoveryParam `json:"parameters,omitempty"`
	ParameterOrder []string                   `json:"parameterOrder,omitempty"`
	Request        *jsonSchema                `json:"request,omitempty"`
	Response       *jsonSchema                `json:"response,omitempty"`
}

type discoveryParam struct {
	Type        string   `json:"type"`
	Format      string   `json:"format,omitempty"`
	Location    string   `json:"location"`
	Description string   `json:"description,omitempty"`
	Required    bool     `json:"required,omitempty"`
	Repeated    bool     `json:"repeated,omitempty"`
	Pattern     string   `json:"pattern,omitempty"`
	Enum        []string `json:"enum,omitempty"`
	Default     string   `json:"default,omitempty"`
}

// jsonSchema is a schema of a discovery document (JSON Schema draft 3, as
// Google's discovery service uses it).
type jsonSchema struct {
	ID                   string                 `json:"id,omitempty"`
	Ref                  string                 `json:"$ref,omitempty"`
	Type                 string                 `json:"type,omitempty"`
	Format               string                 `json:"format,omitempty"`
	Description          string                 `json:"description,omitempty"`
	Enum                 []string               `json:"enum,omitempty"`
	Properties           map[string]*jsonSchema `json:"properties,omitempty"`
	Items                *jsonSchema            `json:"items,omitempty"`
	AdditionalProperties *jsonSchema            `json:"additionalProperties,omitempty"`
}

// systemParameters are the query parameters every method takes, those of
// Google's documents (rest.go accepts them all; only alt, fields,
// access_token and oauth_token change anything).
func systemParameters() map[string]*discoveryParam {
	q := func(typ, desc string) *discoveryParam {
		return &discoveryParam{Type: typ, Location: "query", Description: desc}
	}
	p := map[string]*discoveryParam{
		"$.xgafv":         q("string", "V1 error format (accepted; errors always have the v2 shape)."),
		"access_token":    q("string", "A Passerelle admin token, instead of the Authorization header."),
		"alt":             q("string", "Data format for response: JSON (json;enum-encoding=int gives enums as numbers)."),
		"callback":        q("string", "JSONP (accepted and ignored)."),
		"fields":          q("string", "Selector specifying which fields to include in a partial response."),
		"key":             q("string", "API key (accepted and ignored: Passerelle takes admin tokens)."),
		"oauth_token":     q("string", "A Passerelle admin token, instead of the Authorization header."),
		"prettyPrint":     q("boolean", "Returns response with indentations and line breaks (accepted and ignored)."),
		"quotaUser":       q("string", "Accepted and ignored."),
		"uploadType":      q("string", "Accepted and ignored."),
		"upload_protocol": q("string", "Accepted and ignored."),
	}
	p["$.xgafv"].Enum = []string{"1", "2"}
	p["alt"].Default = "json"
	return p
}

// discoveryBuilder turns routes into a discovery document.
type discoveryBuilder struct {
	doc *discoveryDocument
	// schemaOf records which message each schema name stands for, and
	// which of its fields the schema leaves out (the path parameters of a
	// body: "*" request), so that two messages never share a name.
	schemaOf map[string]string
}

// buildDiscovery returns the discovery document of the primary routes, as
// JSON without rootUrl and baseUrl.
func buildDiscovery(rt *routeTable) ([]byte, error) {
	b := &discoveryBuilder{
		doc: &discoveryDocument{
			Kind: "discovery#restDescription", DiscoveryVersion: "v1",
			ID: "cloudiot:v1", Name: "cloudiot", CanonicalName: "Cloud Iot", Version: "v1",
			Title:       "Cloud IoT API",
			Description: "Registers and manages IoT devices: Google's Cloud IoT Core DeviceManager API, served by Passerelle.",
			Protocol:    "rest", BatchPath: "batch",
			Parameters: systemParameters(),
			Schemas:    map[string]*jsonSchema{},
			Resources:  map[string]*discoveryResource{},
		},
		schemaOf: map[string]string{},
	}
	for i := range rt.routes {
		r := &rt.routes[i]
		if !r.primary {
			// The device-group bindings: Passerelle has no groups, and
			// those paths answer INVALID_ARGUMENT.
			continue
		}
		if err := b.addMethod(r); err != nil {
			return nil, fmt.Errorf("discovery document: %s: %w", r.fullMethod, err)
		}
	}
	return json.Marshal(b.doc)
}

func (b *discoveryBuilder) addMethod(r *httpRoute) error {
	t := &r.template
	if len(t.segments) < 2 || t.segments[0] != "v1" {
		return fmt.Errorf("path does not start with /v1/")
	}
	in := r.method.Input()
	m := &discoveryMethod{HTTPMethod: r.httpMethod, Parameters: map[string]*discoveryParam{}}
	switch r.method.Name() {
	case "SetIamPolicy", "GetIamPolicy":
		m.Description = "Not supported by Passerelle: answers UNIMPLEMENTED. " + status.Convert(iamUnimplemented).Message() + "."
	case "TestIamPermissions":
		m.Description = testIamPermissionsDoc
	}
	bound, err := pathParams(m, t, in)
	if err != nil {
		return err
	}

	// The body, and the query parameters: the request's fields that
	// neither the path nor the body carry.
	switch r.body {
	case "":
		if err := b.queryParams(m.Parameters, in, "", "", bound, 0); err != nil {
			return err
		}
	case "*":
		var left []string
		for p := range bound {
			left = append(left, p)
		}
		name, err := b.schemaRef(in, left)
		if err != nil {
			return err
		}
		m.Request = &jsonSchema{Ref: name}
	default:
		fds, err := fieldPath(in, r.body)
		if err != nil {
			return err
		}
		body := fds[len(fds)-1]
		if body.Message() == nil || body.IsList() || body.IsMap() {
			return fmt.Errorf("body %q is not a message", r.body)
		}
		name, err := b.schemaRef(body.Message(), nil)
		if err != nil {
			return err
		}
		m.Request = &jsonSchema{Ref: name}
		bound[r.body] = true
		if err := b.queryParams(m.Parameters, in, "", "", bound, 0); err != nil {
			return err
		}
	}
	out, err := b.schemaRef(r.method.Output(), nil)
	if err != nil {
		return err
	}
	m.Response = &jsonSchema{Ref: out}

	colls, name, err := methodName(t, r.httpMethod)
	if err != nil {
		return err
	}
	m.ID = "cloudiot." + strings.Join(colls, ".") + "." + name
	res := &discoveryResource{Resources: b.doc.Resources}
	for _, c := range colls {
		if res.Resources == nil {
			res.Resources = map[string]*discoveryResource{}
		}
		next := res.Resources[c]
		if next == nil {
			next = &discoveryResource{}
			res.Resources[c] = next
		}
		res = next
	}
	if res.Methods == nil {
		res.Methods = map[string]*discoveryMethod{}
	}
	if _, dup := res.Methods[name]; dup {
		return fmt.Errorf("method id %s twice", m.ID)
	}
	res.Methods[name] = m
	return nil
}

// pathParams sets m's path, flat path and path parameters from t: a
// variable becomes {+param} (several segments) or {param}, with a pattern;
// the flat path names each wildcard after its collection
// ({registriesId}). It returns the proto field paths the path sets.
func pathParams(m *discoveryMethod, t *pathTemplate, in protoreflect.MessageDescriptor) (map[string]bool, error) {
	var path, flat []string
	bound := map[string]bool{}
	for i := 0; i < len(t.segments); {
		v := varAt(t.vars, i)
		if v == nil {
			path, flat = append(path, t.segments[i]), append(flat, t.segments[i])
			i++
			continue
		}
		fds, err := fieldPath(in, v.fieldPath)
		if err != nil {
			return nil, err
		}
		name := fds[len(fds)-1].JSONName()
		segs := t.segments[v.start:v.end]
		if len(segs) == 1 && segs[0] == "*" {
			path = append(path, "{"+name+"}")
		} else {
			path = append(path, "{+"+name+"}")
		}
		var pattern []string
		for j, s := range segs {
			switch {
			case s == "*":
				pattern = append(pattern, "[^/]+")
				coll := name
				if k := v.start + j - 1; k >= 0 && !isWildcard(t.segments[k]) {
					coll = t.segments[k]
				}
				flat = append(flat, "{"+coll+"Id}")
			case s == "**":
				pattern = append(pattern, ".*")
				flat = append(flat, "{+"+name+"}")
			default:
				pattern = append(pattern, regexp.QuoteMeta(s))
				flat = append(flat, s)
			}
		}
		if _, dup := m.Parameters[name]; dup {
			return nil, fmt.Errorf("two path parameters named %q", name)
		}
		p, err := paramOf(fds[len(fds)-1])
		if err != nil {
			return nil, err
		}
		p.Location, p.Required, p.Pattern = "path", true, "^"+strings.Join(pattern, "/")+"$"
		m.Parameters[name] = p
		m.ParameterOrder = append(m.ParameterOrder, name)
		bound[v.fieldPath] = true
		i = v.end
	}
	m.Path, m.FlatPath = strings.Join(path, "/"), strings.Join(flat, "/")
	if t.verb != "" {
		m.Path += ":" + t.verb
		m.FlatPath += ":" + t.verb
	}
	return bound, nil
}

// methodName returns the resources (the collections of the path) a method
// belongs to and its name, as Google names them: a custom verb names the
// method; a path ending in a collection is list (GET) or create (POST) on
// it; a path ending in a resource is get, patch, delete or update on its
// collection.
func methodName(t *pathTemplate, httpMethod string) (colls []string, name string, err error) {
	last := len(t.segments) - 1
	for i := 1; i <= last; i++ {
		if s := t.segments[i]; !isWildcard(s) && (i == last || isWildcard(t.segments[i+1])) {
			colls = append(colls, s)
		}
	}
	if len(colls) == 0 {
		return nil, "", fmt.Errorf("no collection in the path")
	}
	endsInCollection := !isWildcard(t.segments[last])
	switch {
	case t.verb != "":
		name = t.verb
	case endsInCollection && httpMethod == "GET":
		name = "list"
	case endsInCollection && httpMethod == "POST":
		name = "create"
	case httpMethod == "PUT":
		name = "update"
	default:
		name = strings.ToLower(httpMethod)
	}
	return colls, name, nil
}

func isWildcard(seg string) bool { return seg == "*" || seg == "**" }

// varAt returns the variable that starts at segment i, if any.
func varAt(vars []pathVar, i int) *pathVar {
	for k := range vars {
		if vars[k].start == i {
			return &vars[k]
		}
	}
	return nil
}

// fieldPath resolves a dotted proto field path in md.
func fieldPath(md protoreflect.MessageDescriptor, path string) ([]protoreflect.FieldDescriptor, error) {
	var fds []protoreflect.FieldDescriptor
	for i, name := range strings.Split(path, ".") {
		if i > 0 {
			md = fds[i-1].Message()
			if md == nil {
				return nil, fmt.Errorf("field path %q goes through a scalar", path)
			}
		}
		fd := md.Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			return nil, fmt.Errorf("no field %q in %s", name, md.FullName())
		}
		fds = append(fds, fd)
	}
	return fds, nil
}

// queryParams adds the fields of md that are query parameters: scalars,
// enums and the well-known types with a scalar JSON form, repeated or not,
// through singular messages (gatewayListOptions.gatewayType). Maps and
// repeated messages cannot be query parameters.
func (b *discoveryBuilder) queryParams(params map[string]*discoveryParam, md protoreflect.MessageDescriptor, jsonPrefix, protoPrefix string, bound map[string]bool, depth int) error {
	for i := range md.Fields().Len() {
		fd := md.Fields().Get(i)
		protoPath := protoPrefix + string(fd.Name())
		if bound[protoPath] || fd.IsMap() {
			continue
		}
		name := jsonPrefix + fd.JSONName()
		if fd.Message() != nil && !isParamSchema(scalarSchema(fd)) {
			if !fd.IsList() && depth < 4 {
				if err := b.queryParams(params, fd.Message(), name+".", protoPath+".", bound, depth+1); err != nil {
					return err
				}
			}
			continue
		}
		p, err := paramOf(fd)
		if err != nil {
			return err
		}
		p.Location, p.Repeated = "query", fd.IsList()
		if _, dup := params[name]; dup {
			return fmt.Errorf("two parameters named %q", name)
		}
		params[name] = p
	}
	return nil
}

// paramOf describes a scalar field as a parameter.
func paramOf(fd protoreflect.FieldDescriptor) (*discoveryParam, error) {
	s := scalarSchema(fd)
	if !isParamSchema(s) {
		return nil, fmt.Errorf("field %s cannot be a parameter", fd.FullName())
	}
	return &discoveryParam{Type: s.Type, Format: s.Format, Enum: s.Enum}, nil
}

// isParamSchema reports whether values of schema s (a scalarSchema) have a
// scalar JSON form, and so may be a parameter: scalars, enums, and the
// well-known types such as Timestamp and FieldMask.
func isParamSchema(s *jsonSchema) bool {
	return s != nil && s.Type != "object" && s.Type != "array" && s.Type != "any"
}

// scalarSchema is the schema of a field's values when they are not a
// message of the API (scalars, enums, well-known types), nil otherwise.
// The types and formats are those of the proto3 JSON mapping.
func scalarSchema(fd protoreflect.FieldDescriptor) *jsonSchema {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return &jsonSchema{Type: "boolean"}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return &jsonSchema{Type: "integer", Format: "int32"}
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return &jsonSchema{Type: "integer", Format: "uint32"}
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return &jsonSchema{Type: "string", Format: "int64"}
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return &jsonSchema{Type: "string", Format: "uint64"}
	case protoreflect.FloatKind:
		return &jsonSchema{Type: "number", Format: "float"}
	case protoreflect.DoubleKind:
		return &jsonSchema{Type: "number", Format: "double"}
	case protoreflect.StringKind:
		return &jsonSchema{Type: "string"}
	case protoreflect.BytesKind:
		return &jsonSchema{Type: "string", Format: "byte"}
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		s := &jsonSchema{Type: "string"}
		for i := range vals.Len() {
			s.Enum = append(s.Enum, string(vals.Get(i).Name()))
		}
		return s
	}
	wkt := map[protoreflect.FullName]*jsonSchema{
		"google.protobuf.Timestamp":   {Type: "string", Format: "google-datetime"},
		"google.protobuf.Duration":    {Type: "string", Format: "google-duration"},
		"google.protobuf.FieldMask":   {Type: "string", Format: "google-fieldmask"},
		"google.protobuf.DoubleValue": {Type: "number", Format: "double"},
		"google.protobuf.FloatValue":  {Type: "number", Format: "float"},
		"google.protobuf.Int64Value":  {Type: "string", Format: "int64"},
		"google.protobuf.UInt64Value": {Type: "string", Format: "uint64"},
		"google.protobuf.Int32Value":  {Type: "integer", Format: "int32"},
		"google.protobuf.UInt32Value": {Type: "integer", Format: "uint32"},
		"google.protobuf.BoolValue":   {Type: "boolean"},
		"google.protobuf.StringValue": {Type: "string"},
		"google.protobuf.BytesValue":  {Type: "string", Format: "byte"},
		"google.protobuf.Value":       {Type: "any"},
		"google.protobuf.Struct":      {Type: "object", AdditionalProperties: &jsonSchema{Type: "any"}},
		"google.protobuf.ListValue":   {Type: "array", Items: &jsonSchema{Type: "any"}},
		"google.protobuf.Any": {Type: "object", AdditionalProperties: &jsonSchema{
			Type: "any", Description: "Properties of the object. Contains field @type with type URL.",
		}},
	}
	return wkt[fd.Message().FullName()]
}

// fieldSchema is the schema of a field of a message schema.
func (b *discoveryBuilder) fieldSchema(fd protoreflect.FieldDescriptor) (*jsonSchema, error) {
	if fd.IsMap() {
		v, err := b.valueSchema(fd.MapValue())
		if err != nil {
			return nil, err
		}
		return &jsonSchema{Type: "object", AdditionalProperties: v}, nil
	}
	v, err := b.valueSchema(fd)
	if err != nil || !fd.IsList() {
		return v, err
	}
	return &jsonSchema{Type: "array", Items: v}, nil
}

func (b *discoveryBuilder) valueSchema(fd protoreflect.FieldDescriptor) (*jsonSchema, error) {
	if s := scalarSchema(fd); s != nil {
		return s, nil
	}
	name, err := b.schemaRef(fd.Message(), nil)
	if err != nil {
		return nil, err
	}
	return &jsonSchema{Ref: name}, nil
}

// schemaRef adds the schema of md, without the fields named in leaveOut,
// and returns its name: the message's own name, as Google's documents
// name them (Device, DeviceConfig, Policy, Empty).
func (b *discoveryBuilder) schemaRef(md protoreflect.MessageDescriptor, leaveOut []string) (string, error) {
	name := string(md.Name())
	slices.Sort(leaveOut)
	key := string(md.FullName()) + " without " + strings.Join(leaveOut, ",")
	if seen, ok := b.schemaOf[name]; ok {
		if seen != key {
			return "", fmt.Errorf("schema %s would stand for both %s and %s", name, seen, key)
		}
		return name, nil
	}
	b.schemaOf[name] = key
	s := &jsonSchema{ID: name, Type: "object", Properties: map[string]*jsonSchema{}}
	b.doc.Schemas[name] = s // before the fields: messages may refer to themselves
	for i := range md.Fields().Len() {
		fd := md.Fields().Get(i)
		if slices.Contains(leaveOut, string(fd.Name())) {
			continue
		}
		fs, err := b.fieldSchema(fd)
		if err != nil {
			return "", err
		}
		s.Properties[fd.JSONName()] = fs
	}
	return name, nil
}

// discoveryHandler serves the discovery document, without authentication
// (like Google's) and cacheable, and answers the batch path, which
// Passerelle does not serve, with UNIMPLEMENTED. Everything else goes to
// next: discovery paths never reach the transcoder.
type discoveryHandler struct {
	doc  []byte // the document without rootUrl and baseUrl
	next http.Handler
}

func (d *discoveryHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == discoveryV2Path || p == discoveryV1Path:
		if v := r.URL.Query().Get("version"); p == discoveryV2Path && v != "" && v != "v1" {
			writeGoogleError(w, codes.NotFound, fmt.Sprintf(
				"cloudiot %s is not served here: this Passerelle manager serves cloudiot v1 (%s?version=v1)", v, discoveryV2Path), nil)
			return
		}
		d.serveDocument(w, r)
	case strings.HasPrefix(p, "/$discovery/") || strings.HasPrefix(p, "/discovery/"):
		writeGoogleError(w, codes.NotFound, fmt.Sprintf(
			"No discovery document at %s: this Passerelle manager serves cloudiot v1 at %s?version=v1 and %s",
			p, discoveryV2Path, discoveryV1Path), nil)
	case p == "/batch" || strings.HasPrefix(p, "/batch/"):
		closeUnread(w, r)
		writeGoogleError(w, codes.Unimplemented, "Batch requests are not supported by Passerelle: send each call on its own", nil)
	default:
		d.next.ServeHTTP(w, r)
	}
}

func (d *discoveryHandler) serveDocument(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		closeUnread(w, r)
		w.Header().Set("Allow", "GET, HEAD")
		writeGoogleErrorStatus(w, http.StatusMethodNotAllowed, codes.NotFound, "The discovery document is read with GET", nil)
		return
	}
	root, err := json.Marshal(requestRoot(r))
	if err != nil {
		writeGoogleError(w, codes.Internal, "internal error", nil)
		return
	}
	var body bytes.Buffer
	body.Grow(len(d.doc) + 2*len(root) + 32)
	body.WriteString(`{"rootUrl":`)
	body.Write(root)
	body.WriteString(`,"baseUrl":`) // rootUrl + servicePath ("")
	body.Write(root)
	body.WriteByte(',')
	body.Write(d.doc[1:])
	sum := sha256.Sum256(body.Bytes())
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=UTF-8")
	h.Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(discoveryMaxAge.Seconds())))
	h.Set("Vary", "X-Forwarded-Host, X-Forwarded-Proto")
	h.Set("ETag", `"`+hex.EncodeToString(sum[:16])+`"`)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body.Bytes()))
}

// requestRoot is the root URL of the API as the client reached it:
// X-Forwarded-Proto and X-Forwarded-Host when a proxy sets them (and they
// are well formed), else the scheme of the connection and the Host header.
func requestRoot(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := strings.ToLower(firstForwarded(r.Header.Get("X-Forwarded-Proto"))); p == "http" || p == "https" {
		scheme = p
	}
	host := r.Host
	if h := firstForwarded(r.Header.Get("X-Forwarded-Host")); h != "" && validHost(h) {
		host = h
	}
	if host == "" {
		if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			host = a.String()
		}
	}
	return scheme + "://" + host + "/"
}

// firstForwarded is the first value of a header a chain of proxies may
// have appended to ("a, b").
func firstForwarded(v string) string {
	v, _, _ = strings.Cut(v, ",")
	return strings.TrimSpace(v)
}

// validHost reports whether h is a host or host:port and nothing more.
func validHost(h string) bool {
	u, err := url.Parse("http://" + h)
	return err == nil && u.Host == h && u.User == nil && u.Path == "" && u.RawQuery == "" && u.Fragment == "" &&
		!strings.ContainsAny(h, " \t\"'<>\\")
}
