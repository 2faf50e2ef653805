package hub

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// WithDrain sets how long Serve drains once its context ends, before it
// stops: the server reports not ready at once (Ready, and NOT_SERVING in
// gRPC health), refuses new calls from callers with UNAVAILABLE (reason
// HUB_DRAINING; the retry policy takes them to another replica) while it
// still serves the calls other replicas relay to it, hands the gateways
// it holds over to other replicas spread over the first half of the
// period (their callers here follow them), then ends the callers' open
// streams with UNAVAILABLE spread over what is left of it, so that they
// reconnect elsewhere without a storm. Default 0: stop at once.
func WithDrain(d time.Duration) ServerOption { return func(o *serverOptions) { o.drain = d } }

// drainer is a service that can hand its gateways over (Service).
type drainer interface {
	drainGateways(ctx context.Context, period time.Duration)
}

// readier is a service that can tell whether it can serve (Service).
type readier interface {
	ready() error
}

// errDraining is Ready's answer while the server drains.
var errDraining = errors.New("the hub is draining")

// Ready is nil when the server takes calls: it is not draining, and (in
// a cluster) its replica can reach NATS to prove it holds its gateways.
// It is what a load balancer's readiness probe asks.
func (s *Server) Ready(context.Context) error {
	if s.draining.Load() {
		return errDraining
	}
	if r, ok := s.svc.(readier); ok {
		return r.ready()
	}
	return nil
}

// refuseDraining is the error a new call gets while the server drains;
// nil for calls still served (relayed by another replica, health,
// reflection).
func (s *Server) refuseDraining(ctx context.Context, method string) error {
	if !s.draining.Load() || isRelayed(ctx) || !strings.HasPrefix(method, hubPrefix) {
		return nil
	}
	return unavailable(reasonDraining, "this hub replica is draining; retry, another replica serves the call")
}

// sheddable is a stream the drain can end.
type sheddable struct {
	grpc.ServerStream
	ctx    context.Context
	cancel context.CancelFunc

	mu   sync.Mutex
	shed bool
}

func (st *sheddable) Context() context.Context { return st.ctx }

// serveStream runs a stream handler on a context the drain can cancel,
// and turns a shed stream's end into UNAVAILABLE.
func (s *Server) serveStream(srv any, ss grpc.ServerStream, handler grpc.StreamHandler) error {
	ctx, cancel := context.WithCancel(ss.Context())
	st := &sheddable{ServerStream: ss, ctx: ctx, cancel: cancel}
	s.smu.Lock()
	s.streams[st] = struct{}{}
	s.smu.Unlock()
	err := handler(srv, st)
	s.smu.Lock()
	delete(s.streams, st)
	s.smu.Unlock()
	cancel()
	st.mu.Lock()
	shed := st.shed
	st.mu.Unlock()
	if shed {
		return unavailable(reasonDraining, "this hub replica is draining; open the stream again, another replica serves it")
	}
	return err
}

// drain runs the drain period (see WithDrain).
func (s *Server) drain() {
	start := time.Now()
	s.draining.Store(true)
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	s.health.SetServingStatus("passerelle.hub.v1.Hub", healthpb.HealthCheckResponse_NOT_SERVING)
	s.log.Info("hub: draining", "period", s.o.drain)
	if d, ok := s.svc.(drainer); ok {
		ctx, cancel := context.WithTimeout(context.Background(), s.o.drain/2)
		d.drainGateways(ctx, s.o.drain/2)
		cancel()
	}
	s.smu.Lock()
	streams := make([]*sheddable, 0, len(s.streams))
	for st := range s.streams {
		streams = append(streams, st)
	}
	s.smu.Unlock()
	shedStart := time.Now()
	left := max(s.o.drain-shedStart.Sub(start), 0)
	s.log.Info("hub: draining: ending the open streams", "streams", len(streams), "over", left.Round(time.Millisecond))
	for i, st := range streams {
		if wait := time.Until(shedStart.Add(left * time.Duration(i) / time.Duration(len(streams)))); wait > 0 {
			t := time.NewTimer(wait)
			<-t.C
		}
		st.mu.Lock()
		st.shed = true
		st.mu.Unlock()
		st.cancel()
	}
}
