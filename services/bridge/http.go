package bridge

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/net/netutil"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/devicetopic"
	"github.com/passerelle-iot/passerelle/pkg/resource"
	"github.com/passerelle-iot/passerelle/pkg/store"
)

// Request body limits of the HTTP bridge: the largest event (256 KB) or
// state (64 KB) in base64, and room for the rest of the JSON. Larger
// bodies are refused from their Content-Length, before they are read.
var (
	maxEventBody = int64(base64.StdEncoding.EncodedLen(maxEventBytes) + 2<<10)
	maxStateBody = int64(base64.StdEncoding.EncodedLen(maxStateBytes) + 2<<10)
)

// The HTTP bridge's methods (compat-spec section 8), as counted in
// passerelle.bridge.http.requests.
const (
	rpcPublishEvent = "publishEvent"
	rpcSetState     = "setState"
	rpcGetConfig    = "getConfig"
	rpcUnknown      = "unknown"
)

// HTTP server timeouts. The write timeout leaves room for the longest
// getConfig wait.
const (
	httpReadHeaderTimeout = 10 * time.Second
	httpReadTimeout       = 30 * time.Second
	httpIdleTimeout       = 2 * time.Minute
	httpMaxHeaderBytes    = 16 << 10
	httpShutdownTimeout   = 10 * time.Second
)

// httpBridge serves Cloud IoT Core's HTTP device bridge (cloudiotdevice
// v1) with the MQTT bridge's rules: it is a second front end of Bridge,
// sharing its store, caches, limits and bus.
type httpBridge struct {
	b        *Bridge
	lim      *httpLimits
	waits    *configWaiters
	tokens   *verifiedTokens
	stopping <-chan struct{} // closed when the server shuts down: config waits end
}

// ServeHTTPBridge serves the HTTP device bridge on lis until ctx ends, then
// shuts down (requests in flight get 10 s, getConfig waits end at once
// with UNAVAILABLE) and returns nil. TLS is the caller's, as for Serve:
// pass tls.NewListener(ln, cfg). It closes lis. It needs Serve running
// (which writes the server-set fields and hears the bus) and answers
// UNAVAILABLE while the bridge is not serving or drains.
func (b *Bridge) ServeHTTPBridge(ctx context.Context, lis ...net.Listener) error {
	if len(lis) == 0 {
		return errors.New("bridge: ServeHTTPBridge needs at least one listener")
	}
	stopping := make(chan struct{})
	h := &httpBridge{b: b, lim: b.httpLim, waits: b.cfgWaits, tokens: newVerifiedTokens(), stopping: stopping}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: httpReadHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      b.opts.httpConfigWait + httpReadTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    httpMaxHeaderBytes,
		// HTTP/1.1, as Cloud IoT's bridge: no h2 over TLS.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ErrorLog:     log.New(httpDebugLog{b}, "", 0),
	}
	errc := make(chan error, len(lis))
	var wg sync.WaitGroup
	for _, ln := range lis {
		b.log.Info("bridge: serving the HTTP device bridge", "addr", ln.Addr().String(), "max_connections", b.opts.httpMaxConns)
		if b.opts.httpMaxConns > 0 {
			// Past the cap a new connection waits in the kernel's
			// backlog until one closes: the file descriptors stay the
			// MQTT bridge's and the store's.
			ln = netutil.LimitListener(ln, b.opts.httpMaxConns)
		}
		wg.Go(func() { errc <- srv.Serve(ln) })
	}
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	close(stopping)
	sctx, cancel := context.WithTimeout(context.Background(), httpShutdownTimeout)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil {
		_ = srv.Close()
	}
	wg.Wait()
	close(errc)
	for e := range errc {
		if err == nil {
			err = e
		}
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("bridge: serving HTTP: %w", err)
	}
	return nil
}

type httpDebugLog struct{ b *Bridge }

func (l httpDebugLog) Write(p []byte) (int, error) {
	l.b.log.Debug("bridge: HTTP server", "msg", strings.TrimSpace(string(p)))
	return len(p), nil
}

// httpRequest is what the URL of a request names.
type httpRequest struct {
	rpc  string
	name resource.Device
	reg  store.RegistryKey
}

// parseURL maps the request line to a method of compat-spec section 8:
// POST /v1/{device}:publishEvent, POST /v1/{device}:setState, GET
// /v1/{device}/config.
func parseURL(r *http.Request) (httpRequest, *httpError) {
	var req httpRequest
	rest, ok := strings.CutPrefix(r.URL.Path, "/v1/")
	if !ok {
		return req, httpErr(codeNotFound, "unknown path "+r.URL.Path+": use /v1/projects/{p}/locations/{l}/registries/{r}/devices/{d}:publishEvent, :setState or /config")
	}
	method := http.MethodPost
	var name string
	if n, ok := strings.CutSuffix(rest, "/config"); ok {
		req.rpc, name, method = rpcGetConfig, n, http.MethodGet
	} else if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		name = rest[:i]
		switch rest[i+1:] {
		case rpcPublishEvent:
			req.rpc = rpcPublishEvent
		case rpcSetState:
			req.rpc = rpcSetState
		default:
			return req, httpErr(codeNotFound, "unknown method :"+rest[i+1:]+": use :publishEvent or :setState")
		}
	} else {
		return req, httpErr(codeNotFound, "unknown path "+r.URL.Path+": use {device}:publishEvent, {device}:setState or {device}/config")
	}
	if r.Method != method {
		e := httpErr(codeInvalidArgument, req.rpc+" takes "+method+", not "+r.Method)
		e.status = http.StatusMethodNotAllowed
		return req, e
	}
	dev, err := resource.ParseDevice("name", name)
	if err != nil {
		return req, httpErr(codeInvalidArgument, err.Error())
	}
	if _, num := dev.NumID(); num {
		return req, httpErr(codeInvalidArgument, "the path must name the device by its id, not its numeric id")
	}
	req.name = dev
	req.reg = store.RegistryKey{Project: dev.Project, Location: dev.Location, ID: dev.Registry.Registry}
	return req, nil
}

// ServeHTTP answers one request: the URL and the token's claims are
// checked before the body is read, the signature once the body says
// which gateway (if any) acts; then the method runs.
func (h *httpBridge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	req, herr := parseURL(r)
	rpc := req.rpc
	if rpc == "" {
		rpc = rpcUnknown
	}
	ctx := otel.GetTextMapPropagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := h.b.tel.start(ctx, "bridge.http "+rpc, trace.SpanKindServer)
	code := int32(codeOK)
	defer func() {
		h.b.tel.httpRequest(rpc, code, time.Since(start))
		if span.IsRecording() {
			span.SetAttributes(attribute.String("http.request.method", r.Method), attrResult.String(rpcCodes[code].name))
			if code != codeOK {
				span.SetStatus(codes.Error, rpcCodes[code].name)
			}
		}
		span.End()
	}()
	if herr == nil {
		herr = h.serve(ctx, span, w, r, req)
	}
	if herr != nil {
		code = herr.code
		if herr.code == codeUnauthenticated || herr.status == http.StatusRequestEntityTooLarge {
			// The body was not read: do not read it to keep the
			// connection.
			w.Header().Set("Connection", "close")
		}
		if herr.code == codeInternal || herr.code == codeUnavailable {
			h.b.log.Debug("bridge: HTTP request failed", "rpc", rpc, "path", r.URL.Path, "err", herr.msg)
		}
		writeError(w, herr)
	}
}

func (h *httpBridge) serve(ctx context.Context, span trace.Span, w http.ResponseWriter, r *http.Request, req httpRequest) *httpError {
	b := h.b
	if b.phase.Load() != phaseServing {
		return httpErr(codeUnavailable, errDraining.Error())
	}
	token := bearerToken(r)
	if token == "" {
		return httpErr(codeUnauthenticated, "the request needs the header Authorization: Bearer <the device's JWT>")
	}
	// The token's claims first: a caller without one learns nothing of
	// the registries.
	if err := b.jwt.Precheck(token, req.reg.Project, b.opts.now()); err != nil {
		return httpErr(codeUnauthenticated, err.Error())
	}
	reg, err := b.registry(req.reg)
	if err != nil {
		return storeErr("registry "+req.reg.ID, err)
	}
	if !httpEnabled(reg) {
		return httpErr(codePermissionDenied, errHTTPDisabled)
	}
	var body map[string]json.RawMessage
	gi := gatewayInfoFromQuery(r)
	if req.rpc != rpcGetConfig {
		limit := maxEventBody
		if req.rpc == rpcSetState {
			limit = maxStateBody
		}
		var herr *httpError
		if body, herr = readBody(w, r, limit); herr != nil {
			return herr
		}
		if raw, ok := body["gatewayinfo"]; ok {
			if gi, herr = parseGatewayInfo(raw); herr != nil {
				return herr
			}
		}
	}
	act, herr := h.authenticate(ctx, req, gi, token)
	if herr != nil {
		return herr
	}
	if span.IsRecording() {
		span.SetAttributes(attrDevice.String(act.dev.ID), attrRegistry.String(req.reg.ID))
		if act.gateway != nil {
			span.SetAttributes(attrGateway.String(act.gateway.ID))
		}
	}
	switch req.rpc {
	case rpcPublishEvent:
		return h.publishEvent(ctx, w, reg, act, body)
	case rpcSetState:
		return h.setState(ctx, w, act, body)
	default:
		return h.getConfig(ctx, w, r, act)
	}
}

// bearerToken returns the token of an "Authorization: Bearer" header (the
// scheme is case-insensitive, RFC 9110), or "".
func bearerToken(r *http.Request) string {
	const scheme = "bearer "
	h := r.Header.Get("Authorization")
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return ""
	}
	return strings.TrimSpace(h[len(scheme):])
}

// readBody reads a JSON object of at most limit bytes, its keys folded
// (lower case, no underscores) so that binaryData and binary_data, as
// Google's JSON parser accepts, are one.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) (map[string]json.RawMessage, *httpError) {
	tooLarge := func() *httpError {
		e := httpErr(codeInvalidArgument, fmt.Sprintf("the request body is larger than %d bytes", limit))
		e.status = http.StatusRequestEntityTooLarge
		return e
	}
	if r.ContentLength > limit {
		return nil, tooLarge()
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, tooLarge()
		}
		return nil, httpErr(codeInvalidArgument, "the request body could not be read")
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, httpErr(codeInvalidArgument, "the request body is not a JSON object: "+err.Error())
	}
	return foldKeys(raw), nil
}

func foldKeys(raw map[string]json.RawMessage) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(raw))
	for k, v := range raw {
		out[strings.ToLower(strings.ReplaceAll(k, "_", ""))] = v
	}
	return out
}

// onlyFields refuses a body with a field outside allowed (folded names),
// as Google's JSON parser does ("Unknown name").
func onlyFields(body map[string]json.RawMessage, allowed ...string) *httpError {
	for k := range body {
		known := false
		for _, a := range allowed {
			known = known || k == a
		}
		if !known {
			return httpErr(codeInvalidArgument, fmt.Sprintf("invalid JSON payload: unknown field %q", k))
		}
	}
	return nil
}

// binaryData decodes a bytes field: base64, standard or URL-safe, padded
// or not (Google's samples send URL-safe).
func binaryData(raw json.RawMessage, field string, maxBytes int) ([]byte, *httpError) {
	if raw == nil {
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, httpErr(codeInvalidArgument, field+" must be a base64 string")
	}
	s = strings.TrimRight(s, "=")
	enc := base64.RawStdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.RawURLEncoding
	}
	data, err := enc.DecodeString(s)
	if err != nil {
		return nil, httpErr(codeInvalidArgument, field+" is not valid base64: "+err.Error())
	}
	if len(data) > maxBytes {
		return nil, httpErr(codeInvalidArgument, fmt.Sprintf("%s is %d bytes, at most %d allowed", field, len(data), maxBytes))
	}
	return data, nil
}

func stringField(raw json.RawMessage, field string) (string, *httpError) {
	if raw == nil {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", httpErr(codeInvalidArgument, field+" must be a string")
	}
	return s, nil
}

func (h *httpBridge) publishEvent(ctx context.Context, w http.ResponseWriter, reg *store.Registry, act *httpActor, body map[string]json.RawMessage) *httpError {
	b := h.b
	if herr := onlyFields(body, "binarydata", "subfolder", "gatewayinfo"); herr != nil {
		return herr
	}
	data, herr := binaryData(body["binarydata"], "binary_data", maxEventBytes)
	if herr != nil {
		return herr
	}
	sub, herr := stringField(body["subfolder"], "sub_folder")
	if herr != nil {
		return herr
	}
	if sub != "" {
		if err := devicetopic.CheckSubfolder(sub); err != nil {
			return httpErr(codeInvalidArgument, "sub_folder: "+err.Error())
		}
	}
	if herr := h.lim.admit(b, act.dev.NumID, len(data)+len(sub), false); herr != nil {
		return herr
	}
	topic := eventTopic(reg, sub)
	if topic == "" || b.bus == nil {
		return httpErr(codeFailedPrecondition, "the registry has no event notification config for this event")
	}
	b.tel.msgIn(kindEvent)
	ctx, span := b.tel.start(ctx, spanEvent, trace.SpanKindProducer)
	act.describe(span)
	if span.IsRecording() {
		span.SetAttributes(attrBytes.Int(len(data)))
	}
	// 200 only once the stream holds the event, as a QoS 1 PUBACK.
	pctx, cancel := context.WithTimeout(ctx, b.opts.publishTimeout)
	err := b.bus.PublishNotification(pctx, topic, bus.KindEvent, data, act.attributes(sub))
	cancel()
	endSpan(span, err)
	if err != nil {
		b.log.Log(b.ctx, failureLevel(err), "bridge: forwarding an HTTP event", append(act.logAttrs(), "err", err)...)
		return httpErr(codeUnavailable, "the event could not be stored: send it again")
	}
	now := b.opts.now()
	b.fields.touch(act.ref(), func(f *fieldDelta) { f.event = later(f.event, now) })
	writeJSONBody(w, http.StatusOK, struct{}{})
	return nil
}

func (h *httpBridge) setState(ctx context.Context, w http.ResponseWriter, act *httpActor, body map[string]json.RawMessage) *httpError {
	b := h.b
	if herr := onlyFields(body, "state", "gatewayinfo"); herr != nil {
		return herr
	}
	var state map[string]json.RawMessage
	if raw := body["state"]; raw != nil {
		if err := json.Unmarshal(raw, &state); err != nil {
			return httpErr(codeInvalidArgument, "state must be an object {\"binary_data\": \"<base64>\"}")
		}
	}
	state = foldKeys(state)
	if herr := onlyFields(state, "binarydata"); herr != nil {
		return herr
	}
	data, herr := binaryData(state["binarydata"], "state.binary_data", maxStateBytes)
	if herr != nil {
		return herr
	}
	if herr := h.lim.admit(b, act.dev.NumID, len(data), true); herr != nil {
		return herr
	}
	b.tel.msgIn(kindState)
	now := b.opts.now()
	if err := b.saveState(ctx, act.ref(), act.attributes(""), data, now, act.describe); err != nil {
		return httpErr(codeUnavailable, "the state could not be stored: send it again")
	}
	writeJSONBody(w, http.StatusOK, struct{}{})
	return nil
}

// configResponse is HttpDeviceConfig in JSON.
type configResponse struct {
	Version    string `json:"version"`
	BinaryData string `json:"binaryData,omitempty"`
}

// getConfig answers the latest config; with local_version N > 0, the
// first version newer than N, waiting for it up to the request's deadline
// (X-Server-Timeout, seconds) or WithHTTPConfigWait.
func (h *httpBridge) getConfig(ctx context.Context, w http.ResponseWriter, r *http.Request, act *httpActor) *httpError {
	b := h.b
	q := r.URL.Query()
	lv := q.Get("local_version")
	if lv == "" {
		lv = q.Get("localVersion")
	}
	var local int64
	if lv != "" {
		n, err := strconv.ParseInt(lv, 10, 64)
		if err != nil || n < 0 {
			return httpErr(codeInvalidArgument, "local_version must be a version number, 0 or more")
		}
		local = n
	}
	if herr := h.lim.admit(b, act.dev.NumID, 0, false); herr != nil {
		return herr
	}
	wait := b.opts.httpConfigWait
	if s := r.Header.Get("X-Server-Timeout"); s != "" {
		if sec, err := strconv.ParseFloat(s, 64); err == nil && sec >= 0 && time.Duration(sec*float64(time.Second)) < wait {
			wait = time.Duration(sec * float64(time.Second))
		}
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	ref := act.ref()
	for {
		// Registered before the read: a change announced after it wakes
		// this wait.
		wake, done := h.waits.add(ref.NumID)
		sctx, cancel := context.WithTimeout(ctx, b.opts.storeTimeout)
		dev, err := b.st.GetDevice(sctx, ref)
		cancel()
		switch {
		case err != nil:
			done()
			return storeErr("device "+act.dev.ID, err)
		case dev.Blocked:
			done()
			return httpErr(codePermissionDenied, "the device is blocked")
		case local > dev.Config.Version:
			done()
			return httpErr(codeOutOfRange, fmt.Sprintf("local_version %d is newer than the latest config version %d", local, dev.Config.Version))
		case local == 0 || dev.Config.Version > local:
			done()
			h.sentConfig(act, local)
			b.tel.msgOut(kindConfig)
			writeJSONBody(w, http.StatusOK, configResponse{
				Version:    strconv.FormatInt(dev.Config.Version, 10),
				BinaryData: base64.StdEncoding.EncodeToString(dev.Config.Data),
			})
			return nil
		}
		select {
		case <-wake:
			done()
		case <-timer.C:
			done()
			return httpErr(codeDeadlineExceeded, fmt.Sprintf("no config newer than version %d within %s", local, wait))
		case <-ctx.Done():
			done()
			return httpErr(codeDeadlineExceeded, "the request ended while waiting for a newer config")
		case <-h.stopping:
			done()
			return httpErr(codeUnavailable, errDraining.Error())
		}
	}
}

// sentConfig records a config sent; local_version N > 0 tells that the
// device holds version N, which counts as its acknowledgement.
func (h *httpBridge) sentConfig(act *httpActor, local int64) {
	now := h.b.opts.now()
	h.b.fields.touch(act.ref(), func(f *fieldDelta) {
		f.configSend = later(f.configSend, now)
		if local > 0 && local >= f.ackVersion {
			f.ackVersion, f.ackTime = local, now
		}
	})
}
