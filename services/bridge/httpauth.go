package bridge

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sync"

	"go.opentelemetry.io/otel/trace"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/deviceauth"
	"github.com/passerelle-iot/passerelle/pkg/store"
)

// httpDisabled is iotpb.HttpState HTTP_DISABLED; UNSPECIFIED counts as
// enabled.
const httpDisabled = 2

// httpEnabled reports whether devices of reg may use the HTTP bridge.
func httpEnabled(reg *store.Registry) bool { return reg.HTTPEnabledState != httpDisabled }

// errHTTPDisabled answers a request to a registry whose httpConfig is
// HTTP_DISABLED.
const errHTTPDisabled = "HTTP is disabled on the registry (httpConfig.httpEnabledState)"

// gatewayInfo is the request's GatewayInfo oneof: the gateway acting for
// the device of the path (GatewayID), or the device the gateway of the
// path acts for (DelegatedDeviceID).
type gatewayInfo struct {
	GatewayID         string
	DelegatedDeviceID string
}

// gatewayInfoFromQuery reads gatewayInfo from getConfig's query
// parameters (gateway_info.gateway_id or gatewayInfo.gatewayId, and the
// same for the delegated device).
func gatewayInfoFromQuery(r *http.Request) gatewayInfo {
	q := r.URL.Query()
	first := func(names ...string) string {
		for _, n := range names {
			if v := q.Get(n); v != "" {
				return v
			}
		}
		return ""
	}
	return gatewayInfo{
		GatewayID:         first("gateway_info.gateway_id", "gatewayInfo.gatewayId"),
		DelegatedDeviceID: first("gateway_info.delegated_device_id", "gatewayInfo.delegatedDeviceId"),
	}
}

func parseGatewayInfo(raw json.RawMessage) (gatewayInfo, *httpError) {
	var gi gatewayInfo
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return gi, httpErr(codeInvalidArgument, "gateway_info must be an object {\"gateway_id\": ...} or {\"delegated_device_id\": ...}")
	}
	m = foldKeys(m)
	if herr := onlyFields(m, "gatewayid", "delegateddeviceid"); herr != nil {
		return gi, herr
	}
	var herr *httpError
	if gi.GatewayID, herr = stringField(m["gatewayid"], "gateway_info.gateway_id"); herr != nil {
		return gi, herr
	}
	gi.DelegatedDeviceID, herr = stringField(m["delegateddeviceid"], "gateway_info.delegated_device_id")
	return gi, herr
}

// httpActor is who a request acts for: dev, directly or through gateway.
type httpActor struct {
	reg     store.RegistryKey
	dev     *store.Device
	gateway *store.Device // nil for a direct request
}

func (a *httpActor) ref() store.DeviceRef {
	return store.DeviceRef{Registry: a.reg, NumID: a.dev.NumID}
}

func (a *httpActor) attributes(subFolder string) bus.Attributes {
	attrs := bus.Attributes{
		DeviceID:               a.dev.ID,
		DeviceNumID:            numIDString(a.dev.NumID),
		DeviceRegistryID:       a.reg.ID,
		DeviceRegistryLocation: a.reg.Location,
		ProjectID:              a.reg.Project,
		SubFolder:              subFolder,
	}
	if a.gateway != nil {
		attrs.GatewayID = a.gateway.ID
	}
	return attrs
}

func (a *httpActor) describe(span trace.Span) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attrDevice.String(a.dev.ID), attrRegistry.String(a.reg.ID))
	if a.gateway != nil {
		span.SetAttributes(attrGateway.String(a.gateway.ID))
	}
}

func (a *httpActor) logAttrs() []any {
	attrs := []any{"device", a.dev.ID, "registry", a.reg.ID, "project", a.reg.Project}
	if a.gateway != nil {
		attrs = append(attrs, "gateway", a.gateway.ID)
	}
	return attrs
}

// authenticate finds who the request acts for and checks its token with
// the MQTT bridge's rules: a direct device signs with its own key; a
// gateway acting for a device (gatewayInfo) is checked as an MQTT attach
// is (checkDelegation), the token being the gateway's for
// ASSOCIATION_ONLY and the device's for the methods that check the
// device's token.
func (h *httpBridge) authenticate(ctx context.Context, req httpRequest, gi gatewayInfo, token string) (*httpActor, *httpError) {
	b := h.b
	get := func(id string) (*store.Device, *httpError) {
		sctx, cancel := context.WithTimeout(ctx, b.opts.storeTimeout)
		defer cancel()
		dev, err := b.st.GetDevice(sctx, store.DeviceRef{Registry: req.reg, ID: id})
		if err != nil {
			return nil, storeErr("device "+id, err)
		}
		return dev, nil
	}
	act := &httpActor{reg: req.reg}
	var gwID, devID string
	switch {
	case gi.GatewayID != "" && gi.DelegatedDeviceID != "":
		return nil, httpErr(codeInvalidArgument, "gateway_info takes gateway_id or delegated_device_id, not both")
	case gi.GatewayID != "":
		gwID, devID = gi.GatewayID, req.name.Device
	case gi.DelegatedDeviceID != "":
		gwID, devID = req.name.Device, gi.DelegatedDeviceID
	default:
		dev, herr := get(req.name.Device)
		if herr != nil {
			return nil, herr
		}
		act.dev = dev
		if dev.Blocked {
			return nil, httpErr(codePermissionDenied, "the device is blocked")
		}
		if herr := h.verify(dev, token); herr != nil {
			return nil, herr
		}
		return act, nil
	}
	gw, herr := get(gwID)
	if herr != nil {
		return nil, herr
	}
	switch {
	case gw.GatewayType != store.GatewayTypeGateway:
		return nil, httpErr(codeInvalidArgument, "device "+gwID+" is not a gateway (gatewayConfig.gatewayType)")
	case gw.Blocked:
		return nil, httpErr(codePermissionDenied, "the gateway is blocked")
	}
	dev, herr := get(devID)
	if herr != nil {
		return nil, herr
	}
	act.dev, act.gateway = dev, gw
	if gw.GatewayAuthMethod == authAssociationOnly {
		// The gateway's own token; checkDelegation checks the binding.
		if herr := h.verify(gw, token); herr != nil {
			return nil, herr
		}
	}
	sctx, cancel := context.WithTimeout(ctx, b.opts.storeTimeout)
	err := b.checkDelegation(sctx, store.DeviceRef{Registry: req.reg, NumID: gw.NumID}, gw.GatewayAuthMethod, dev, token)
	cancel()
	switch {
	case errors.Is(err, errBindingUnread):
		return nil, httpErr(codeUnavailable, err.Error()+": retry later")
	case errors.Is(err, deviceauth.ErrInvalidJWT):
		b.recordAuthError(dev, err.Error())
		return nil, httpErr(codeUnauthenticated, err.Error())
	case err != nil:
		return nil, httpErr(codePermissionDenied, "gateway "+gw.ID+" may not act for device "+dev.ID+": "+err.Error())
	}
	now := b.opts.now()
	b.fields.touch(act.ref(), func(f *fieldDelta) { f.gatewayID, f.gatewayTime = gw.ID, later(f.gatewayTime, now) })
	return act, nil
}

// verify checks token against dev's unexpired credentials, recording a
// refusal in dev's lastErrorStatus as a refused CONNECT does. A device
// sends the same JWT with every request until it renews it, so a token
// verified once is remembered (tokens): the next request with it skips
// the signature check (about 80 us for ES256) as long as the credential
// that verified it is still one of dev's unexpired credentials. Its
// claims were checked by Precheck for this request.
func (h *httpBridge) verify(dev *store.Device, token string) *httpError {
	now := h.b.opts.now()
	keys, ids := h.b.activeKeys(dev, now)
	sum := sha256.Sum256([]byte(token))
	if cred, ok := h.tokens.get(sum, dev.NumID); ok && slices.Contains(ids, cred) {
		return nil
	}
	claims, err := h.b.jwt.Verify(token, keys, dev.Registry.Project, now)
	if err != nil {
		h.b.recordAuthError(dev, err.Error())
		return httpErr(codeUnauthenticated, err.Error())
	}
	for i, k := range keys {
		if k == claims.Key {
			h.tokens.put(sum, dev.NumID, ids[i])
		}
	}
	return nil
}

// verifiedTokens remembers which credential of a device verified a token
// (by its SHA-256), up to maxVerifiedTokens; when full it starts
// again empty, as the registry cache does.
type verifiedTokens struct {
	mu sync.Mutex
	m  map[tokenKey]credID
}

// tokenKey is a token of a device: devices that share a key may send the
// same token, each verified for itself.
type tokenKey struct {
	sum   [sha256.Size]byte
	numID uint64
}

// maxVerifiedTokens bounds verifiedTokens: about 200 bytes an entry.
const maxVerifiedTokens = 50000

func newVerifiedTokens() *verifiedTokens {
	return &verifiedTokens{m: make(map[tokenKey]credID)}
}

func (v *verifiedTokens) get(sum [sha256.Size]byte, numID uint64) (credID, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	cred, ok := v.m[tokenKey{sum, numID}]
	return cred, ok
}

func (v *verifiedTokens) put(sum [sha256.Size]byte, numID uint64, cred credID) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.m) >= maxVerifiedTokens {
		clear(v.m)
	}
	v.m[tokenKey{sum, numID}] = cred
}
