package hub

import (
	"bytes"

	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	hubv1 "github.com/passerelle-iot/passerelle/gen/passerelle/hub/v1"
	"github.com/passerelle-iot/passerelle/pkg/devicetopic"
	"github.com/passerelle-iot/passerelle/pkg/resource"
)

// Service implements hubv1.HubServer on a Pool.
type Service struct {
	hubv1.UnimplementedHubServer
	log      *slog.Logger
	pool     *Pool
	keys     *Keys
	prov     Provisioner     // nil: no provisioning (create/bind, CreateGateway, config versions)
	versions *configVersions // nil without prov
}

// NewService returns the Hub service. prov may be nil: provisioning calls
// then fail with FAILED_PRECONDITION and config versions are 0.
func NewService(logger *slog.Logger, pool *Pool, keys *Keys, prov Provisioner) *Service {
	s := &Service{log: logger, pool: pool, keys: keys, prov: prov}
	if prov != nil {
		s.versions = newConfigVersions(prov)
	}
	return s
}

// ready is nil while the pool can serve (in a cluster: reach NATS).
func (s *Service) ready() error { return s.pool.ready() }

// drainGateways hands the gateways this replica holds over to others.
func (s *Service) drainGateways(ctx context.Context, period time.Duration) {
	s.pool.drain(ctx, period)
}

// Close ends the service's background work (config version lookups in
// flight). Call it once no call is served any more; Server.Serve does.
func (s *Service) Close() {
	if s.versions != nil {
		s.versions.stop()
	}
}

func decodeB64(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }

// grpcError maps an error to its gRPC status, in one place. Uncoded errors
// are logged and become INTERNAL with a generic message.
func (s *Service) grpcError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var be *BridgeError
	var pe *ProvisionError
	var re *resource.Error
	switch {
	case errors.Is(err, context.Canceled):
		return withReason(codes.Canceled, hubv1.ErrorReason_CALL_CANCELLED, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return withReason(codes.DeadlineExceeded, hubv1.ErrorReason_DEADLINE_EXCEEDED, err.Error())
	case errors.As(err, &be):
		return bridgeErrorStatus(be)
	case errors.As(err, &re):
		return invalidField(re.Field, "%s", re.Msg)
	case errors.Is(err, ErrInvalid):
		return withReason(codes.InvalidArgument, hubv1.ErrorReason_INVALID_FIELD, err.Error())
	case errors.Is(err, ErrGatewayDeleted):
		return withReason(codes.NotFound, hubv1.ErrorReason_GATEWAY_DELETED, err.Error())
	case errors.Is(err, ErrNoKey):
		return withReason(codes.FailedPrecondition, reasonNoKey, err.Error()+" (create it with CreateGateway, or name it in the gateways file; hub replicas share their key store folder)")
	case errors.Is(err, ErrKeyExists):
		return withReason(codes.AlreadyExists, hubv1.ErrorReason_GATEWAY_KEY_EXISTS, err.Error())
	case errors.Is(err, ErrRefused):
		return withReason(codes.FailedPrecondition, hubv1.ErrorReason_GATEWAY_REFUSED, err.Error()+" (is the gateway in its registry, with this key?)")
	case errors.Is(err, ErrTooManyDevices):
		return withReason(codes.ResourceExhausted, hubv1.ErrorReason_TOO_MANY_DEVICES, err.Error())
	case errors.Is(err, ErrSlowConsumer):
		return withReason(codes.ResourceExhausted, hubv1.ErrorReason_SLOW_CONSUMER, err.Error())
	case errors.Is(err, ErrDropped):
		return withReason(codes.FailedPrecondition, hubv1.ErrorReason_MESSAGE_DROPPED, err.Error())
	case errors.Is(err, ErrUnavailable):
		return unavailable(reasonBridgeUnavailable, err.Error())
	case errors.Is(err, ErrClosed):
		return unavailable(reasonClosing, err.Error())
	case errors.Is(err, errMoved):
		return unavailable(reasonMoved, "the gateway's connection is moving between hub replicas; retry")
	case errors.Is(err, errNoOwner):
		return unavailable(reasonMoved, err.Error()+"; retry")
	case errors.As(err, &pe):
		return withReason(httpCode(pe.HTTPStatus), hubv1.ErrorReason_PROVISIONING_FAILED, err.Error(), "http_status", strconv.Itoa(pe.HTTPStatus))
	}
	s.log.Error("hub: internal error", "err", err)
	return withReason(codes.Internal, hubv1.ErrorReason_INTERNAL_ERROR, "internal error")
}

func httpCode(c int) codes.Code {
	switch c {
	case http.StatusBadRequest:
		return codes.InvalidArgument
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusNotFound:
		return codes.NotFound
	case http.StatusConflict:
		return codes.AlreadyExists
	case http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	}
	return codes.Internal
}

// errNoProvisioning is the FAILED_PRECONDITION of a call that needs the
// admin API on a hub without one.
func errNoProvisioning(what string) error {
	return withReason(codes.FailedPrecondition, hubv1.ErrorReason_PROVISIONING_DISABLED, "the hub has no admin API to "+what+" with (--manager-url)")
}

// resourceError is the INVALID_ARGUMENT of a malformed name or id.
func resourceError(err error) error {
	var re *resource.Error
	if errors.As(err, &re) {
		return invalidField(re.Field, "%s", re.Msg)
	}
	return withReason(codes.InvalidArgument, hubv1.ErrorReason_INVALID_FIELD, err.Error())
}

// checkTarget validates a gateway name and an optional device id.
func checkTarget(gateway, deviceID string) (resource.Device, error) {
	if gateway == "" {
		return resource.Device{}, invalidField("gateway", "'gateway' is required")
	}
	d, err := resource.ParseDevice("gateway", gateway)
	if err != nil {
		return resource.Device{}, resourceError(err)
	}
	if _, num := d.NumID(); num {
		return resource.Device{}, invalidField("gateway", "'gateway' must name the gateway by its id, not its numeric id")
	}
	if deviceID != "" {
		if err := resource.CheckID("device_id", deviceID); err != nil {
			return resource.Device{}, resourceError(err)
		}
	}
	return d, nil
}

// Attach implements hubv1.HubServer.
func (s *Service) Attach(stream grpc.BidiStreamingServer[hubv1.AttachRequest, hubv1.AttachResponse]) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	gwName, err := checkTarget(first.GetGateway(), first.GetDeviceId())
	if err != nil {
		return err
	}
	if first.GetDeviceId() == "" {
		return invalidField("device_id", "'device_id' is required")
	}
	var created, bound bool
	if first.GetCreateIfMissing() || first.GetBindIfNeeded() {
		if s.prov == nil {
			return errNoProvisioning("create or bind devices")
		}
		reg := gwName.Registry.Name()
		if first.GetCreateIfMissing() {
			if created, err = s.prov.EnsureDevice(ctx, reg, first.GetDeviceId()); err != nil {
				return s.grpcError(err)
			}
		}
		if first.GetBindIfNeeded() {
			if bound, err = s.prov.EnsureBound(ctx, reg, gwName.Device, first.GetDeviceId()); err != nil {
				return s.grpcError(err)
			}
		}
	}
	h, err := s.pool.Hold(ctx, first.GetGateway(), first.GetDeviceId(), first.GetAuthorization())
	if err != nil {
		return s.grpcError(err)
	}
	defer h.Release()
	devName := gwName.Registry.Name() + "/devices/" + first.GetDeviceId()
	if err := stream.Send(&hubv1.AttachResponse{Event: &hubv1.AttachResponse_Attached{
		Attached: &hubv1.Attached{Device: devName, Created: created, Bound: bound},
	}}); err != nil {
		return err
	}
	// Later requests may only refresh the device's JWT; the client's
	// half-close detaches.
	recvDone := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recvDone <- err
				return
			}
			if (req.GetGateway() != "" && req.GetGateway() != first.GetGateway()) ||
				(req.GetDeviceId() != "" && req.GetDeviceId() != first.GetDeviceId()) ||
				req.GetCreateIfMissing() || req.GetBindIfNeeded() {
				recvDone <- targetChanged("after the first request, an Attach stream takes only 'authorization'")
				return
			}
			h.SetAuthorization(req.GetAuthorization())
		}
	}()
	for {
		select {
		case err := <-recvDone:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case ev := <-h.Events():
			var resp *hubv1.AttachResponse
			switch {
			case ev.Lost != nil:
				return s.grpcError(ev.Lost)
			case ev.Reattached:
				resp = &hubv1.AttachResponse{Event: &hubv1.AttachResponse_Reattached{Reattached: &hubv1.Reattached{Reconnects: ev.Reconnects}}}
			case ev.Error != nil:
				resp = &hubv1.AttachResponse{Event: &hubv1.AttachResponse_Error{Error: &hubv1.GatewayError{
					ErrorType: ev.Error.ErrorType, Description: ev.Error.Description, DeviceId: ev.Error.DeviceID,
					Topic: ev.Error.Info.Topic, PacketId: uint32(ev.Error.Info.PacketID),
				}}}
			default:
				continue
			}
			if err := stream.Send(resp); err != nil {
				return err
			}
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// SubscribeConfig implements hubv1.HubServer.
func (s *Service) SubscribeConfig(req *hubv1.SubscribeConfigRequest, stream grpc.ServerStreamingServer[hubv1.SubscribeConfigResponse]) error {
	ctx := stream.Context()
	gwName, err := checkTarget(req.GetGateway(), req.GetDeviceId())
	if err != nil {
		return err
	}
	h, err := s.pool.Hold(ctx, req.GetGateway(), req.GetDeviceId(), req.GetAuthorization())
	if err != nil {
		return s.grpcError(err)
	}
	defer h.Release()
	sub, err := h.SubscribeConfig(ctx)
	if err != nil {
		return s.grpcError(err)
	}
	defer sub.Close()
	devID := gwName.Device
	if req.GetDeviceId() != "" {
		devID = req.GetDeviceId()
	}
	for {
		c, err := sub.Next(ctx)
		if err != nil {
			return s.grpcError(err)
		}
		resp := &hubv1.SubscribeConfigResponse{Version: c.Version, Data: c.Data, ReceiveTime: timestamppb.New(c.ReceiveTime)}
		if c.Version == 0 {
			// Received here: the replica relaying a gateway's configs
			// has looked its versions up already.
			if v, ok := s.configVersion(ctx, gwName.Registry, devID, c.Data); ok {
				resp.Version = v
			}
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// configVersion asks the admin API which version a config the bridge sent
// is (MQTT carries none), trusting the answer only when it is that data.
func (s *Service) configVersion(ctx context.Context, registry resource.Registry, deviceID string, data []byte) (int64, bool) {
	if s.versions == nil {
		return 0, false
	}
	cfg, found, err := s.versions.lookup(ctx, registry.Name(), deviceID)
	if err != nil || !found {
		return 0, false
	}
	return cfg.Version, bytes.Equal(cfg.Data, data)
}

// PublishState implements hubv1.HubServer.
func (s *Service) PublishState(stream grpc.BidiStreamingServer[hubv1.PublishStateRequest, hubv1.PublishStateResponse]) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if _, err := checkTarget(first.GetGateway(), first.GetDeviceId()); err != nil {
		return err
	}
	h, err := s.pool.Hold(ctx, first.GetGateway(), first.GetDeviceId(), first.GetAuthorization())
	if err != nil {
		return s.grpcError(err)
	}
	defer h.Release()
	// Requests are read on their own goroutine, one ahead at most, so
	// that the end of ctx (a drain) ends the call while it waits for one.
	reqs, recvErr := make(chan *hubv1.PublishStateRequest), make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()
	req := first
	for i := int64(0); ; i++ {
		if i > 0 {
			select {
			case req = <-reqs:
			case err := <-recvErr:
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			case <-ctx.Done():
				return status.FromContextError(ctx.Err()).Err()
			}
			if (req.GetGateway() != "" && req.GetGateway() != first.GetGateway()) ||
				(req.GetDeviceId() != "" && req.GetDeviceId() != first.GetDeviceId()) {
				return targetChanged("request %d names another gateway or device than the first", i)
			}
		}
		if len(req.GetData()) > MaxStateBytes {
			return tooLarge(fmt.Sprintf("request %d: state", i), len(req.GetData()), MaxStateBytes)
		}
		if err := h.Publish(ctx, "state", req.GetData()); err != nil {
			return s.grpcError(err)
		}
		if err := stream.Send(&hubv1.PublishStateResponse{Index: i}); err != nil {
			return err
		}
	}
}

// checkEvent validates an event's subfolder and payload and returns its
// topic suffix.
func checkEvent(subFolder string, data []byte) (string, error) {
	suffix := "events"
	if subFolder != "" {
		if err := devicetopic.CheckSubfolder(subFolder); err != nil {
			return "", invalidField("sub_folder", "'sub_folder' is invalid: %v", err)
		}
		suffix += "/" + subFolder
	}
	if len(data) > MaxEventBytes {
		return "", tooLarge("event", len(data), MaxEventBytes)
	}
	return suffix, nil
}

// PublishEvent implements hubv1.HubServer.
func (s *Service) PublishEvent(ctx context.Context, req *hubv1.PublishEventRequest) (*hubv1.PublishEventResponse, error) {
	if _, err := checkTarget(req.GetGateway(), req.GetDeviceId()); err != nil {
		return nil, err
	}
	suffix, err := checkEvent(req.GetSubFolder(), req.GetData())
	if err != nil {
		return nil, err
	}
	h, err := s.pool.holdBrief(ctx, req.GetGateway(), req.GetDeviceId(), req.GetAuthorization())
	if err != nil {
		return nil, s.grpcError(err)
	}
	defer h.Release()
	if err := h.Publish(ctx, suffix, req.GetData()); err != nil {
		return nil, s.grpcError(err)
	}
	return &hubv1.PublishEventResponse{}, nil
}

// SubscribeCommands implements hubv1.HubServer.
func (s *Service) SubscribeCommands(req *hubv1.SubscribeCommandsRequest, stream grpc.ServerStreamingServer[hubv1.SubscribeCommandsResponse]) error {
	ctx := stream.Context()
	if _, err := checkTarget(req.GetGateway(), req.GetDeviceId()); err != nil {
		return err
	}
	h, err := s.pool.Hold(ctx, req.GetGateway(), req.GetDeviceId(), req.GetAuthorization())
	if err != nil {
		return s.grpcError(err)
	}
	defer h.Release()
	sub, err := h.SubscribeCommands(ctx)
	if err != nil {
		return s.grpcError(err)
	}
	defer sub.Close()
	for {
		c, err := sub.Next(ctx)
		if err != nil {
			return s.grpcError(err)
		}
		if err := stream.Send(&hubv1.SubscribeCommandsResponse{SubFolder: c.SubFolder, Data: c.Data, ReceiveTime: timestamppb.New(c.ReceiveTime)}); err != nil {
			return err
		}
	}
}

var authMethods = map[hubv1.GatewayAuthMethod]string{
	hubv1.GatewayAuthMethod_GATEWAY_AUTH_METHOD_UNSPECIFIED:                       "ASSOCIATION_ONLY",
	hubv1.GatewayAuthMethod_GATEWAY_AUTH_METHOD_ASSOCIATION_ONLY:                  "ASSOCIATION_ONLY",
	hubv1.GatewayAuthMethod_GATEWAY_AUTH_METHOD_DEVICE_AUTH_TOKEN_ONLY:            "DEVICE_AUTH_TOKEN_ONLY",
	hubv1.GatewayAuthMethod_GATEWAY_AUTH_METHOD_ASSOCIATION_AND_DEVICE_AUTH_TOKEN: "ASSOCIATION_AND_DEVICE_AUTH_TOKEN",
}

// CreateGateway implements hubv1.HubServer.
func (s *Service) CreateGateway(ctx context.Context, req *hubv1.CreateGatewayRequest) (*hubv1.CreateGatewayResponse, error) {
	reg, err := resource.ParseRegistry("parent", req.GetParent())
	if err != nil {
		return nil, resourceError(err)
	}
	if err := resource.CheckID("gateway_id", req.GetGatewayId()); err != nil {
		return nil, resourceError(err)
	}
	method, ok := authMethods[req.GetGatewayAuthMethod()]
	if !ok {
		return nil, invalidField("gateway_auth_method", "'gateway_auth_method' %v is unknown", req.GetGatewayAuthMethod())
	}
	alg := ES256
	switch req.GetAlgorithm() {
	case hubv1.Algorithm_ALGORITHM_RS256:
		alg = RS256
	case hubv1.Algorithm_ALGORITHM_ES256, hubv1.Algorithm_ALGORITHM_UNSPECIFIED:
	default:
		return nil, invalidField("algorithm", "'algorithm' %v is unknown", req.GetAlgorithm())
	}
	if s.prov == nil {
		return nil, errNoProvisioning("create gateways")
	}
	name := reg.Name() + "/devices/" + req.GetGatewayId()
	g, err := s.keys.Generate(name, alg)
	if err != nil {
		return nil, s.grpcError(err)
	}
	if err := s.prov.CreateGateway(ctx, reg.Name(), req.GetGatewayId(), method, g.Format, g.PublicKeyPEM); err != nil {
		return nil, s.grpcError(err)
	}
	key, err := s.keys.Commit(g)
	if err != nil {
		return nil, s.grpcError(err)
	}
	return &hubv1.CreateGatewayResponse{Gateway: s.gatewayProto(key)}, nil
}

func (s *Service) gatewayProto(k *GatewayKey) *hubv1.Gateway {
	g := &hubv1.Gateway{Name: k.Name, Algorithm: hubv1.Algorithm_ALGORITHM_ES256, KeySource: hubv1.KeySource(k.Source),
		State: hubv1.ConnectionState_CONNECTION_STATE_IDLE}
	if k.Algorithm == RS256 {
		g.Algorithm = hubv1.Algorithm_ALGORITHM_RS256
	}
	if v, ok := s.pool.Connection(k.Name); ok {
		g.State = stateProto(v.State)
		for _, d := range v.Devices {
			if d.Attached {
				g.AttachedDeviceCount++
			}
		}
	}
	return g
}

func stateProto(st ConnState) hubv1.ConnectionState {
	switch st {
	case StateConnecting:
		return hubv1.ConnectionState_CONNECTION_STATE_CONNECTING
	case StateConnected:
		return hubv1.ConnectionState_CONNECTION_STATE_CONNECTED
	case StateReconnecting:
		return hubv1.ConnectionState_CONNECTION_STATE_RECONNECTING
	}
	return hubv1.ConnectionState_CONNECTION_STATE_UNSPECIFIED
}

// ListGateways implements hubv1.HubServer.
func (s *Service) ListGateways(context.Context, *hubv1.ListGatewaysRequest) (*hubv1.ListGatewaysResponse, error) {
	resp := &hubv1.ListGatewaysResponse{}
	for _, k := range s.keys.List() {
		resp.Gateways = append(resp.Gateways, s.gatewayProto(k))
	}
	return resp, nil
}

// GetPool implements hubv1.HubServer.
func (s *Service) GetPool(context.Context, *hubv1.GetPoolRequest) (*hubv1.GetPoolResponse, error) {
	resp := &hubv1.GetPoolResponse{}
	for _, v := range s.pool.View() {
		c := &hubv1.GatewayConnection{Gateway: v.Gateway, State: stateProto(v.State), Reconnects: v.Reconnects, Holders: int32(v.Holders)}
		if !v.ConnectTime.IsZero() {
			c.ConnectTime, c.TokenExpireTime = timestamppb.New(v.ConnectTime), timestamppb.New(v.TokenExpiry)
		}
		for _, d := range v.Devices {
			c.AttachedDevices = append(c.AttachedDevices, &hubv1.AttachedDevice{DeviceId: d.ID, Holders: int32(d.Holders), Attached: d.Attached})
		}
		resp.Connections = append(resp.Connections, c)
	}
	return resp, nil
}
