// Package telemetry sets up OpenTelemetry for a Passerelle process: traces and
// metrics exported over OTLP/gRPC when the standard OTEL_* environment
// variables ask for it, and the same metrics always ready for a Prometheus
// scrape (Metrics, served on /metrics of the operator address).
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Environment variables that turn exporting on. The exporters read these
// (and every other OTEL_EXPORTER_OTLP_* variable) themselves; Setup only
// looks at them to decide whether to install an SDK at all, so that a
// process without them pays nothing and dials nowhere.
const (
	envEndpoint        = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envTracesEndpoint  = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envMetricsEndpoint = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
	envSDKDisabled     = "OTEL_SDK_DISABLED"
)

// Telemetry is what Setup installed: the /metrics handler and the final
// flush.
type Telemetry struct {
	// Metrics serves every OpenTelemetry instrument of the process in the
	// Prometheus text format (the OTel Prometheus exporter), plus the Go
	// runtime's and the process's collectors.
	Metrics http.Handler
	// Shutdown flushes and stops what was installed; it returns when ctx
	// is done at the latest, and is safe to call more than once.
	Shutdown func(context.Context) error
}

// Setup installs OpenTelemetry providers as the otel globals. The meter
// provider is always installed, read by a Prometheus exporter (scraped
// through Metrics) and, when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_METRICS_ENDPOINT is set, pushed over OTLP too. The
// tracer provider (OTLP) and the W3C trace-context + baggage propagator are
// installed when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set; otherwise traces stay the
// no-op global and nothing dials anywhere. OTEL_SDK_DISABLED=true turns
// everything off (Metrics then serves only the Go collectors). serviceName
// becomes the resource's service.name unless OTEL_SERVICE_NAME or
// OTEL_RESOURCE_ATTRIBUTES says otherwise.
func Setup(ctx context.Context, logger *slog.Logger, serviceName string) (*Telemetry, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	t := &Telemetry{
		Metrics:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: promLog{logger}}),
		Shutdown: func(context.Context) error { return nil },
	}
	if strings.EqualFold(os.Getenv(envSDKDisabled), "true") {
		logger.Debug("telemetry off: OTEL_SDK_DISABLED is true")
		return t, nil
	}
	traces := os.Getenv(envEndpoint) != "" || os.Getenv(envTracesEndpoint) != ""
	otlpMetrics := os.Getenv(envEndpoint) != "" || os.Getenv(envMetricsEndpoint) != ""

	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", serviceName)),
		resource.WithTelemetrySDK(),
		// Later detectors win: the environment overrides serviceName.
		resource.WithFromEnv(),
	)
	if err != nil {
		return t, fmt.Errorf("telemetry: build resource: %w", err)
	}

	var shutdowns []func(context.Context) error
	shutdownAll := func(ctx context.Context) error {
		// Side by side, so that a collector that does not answer costs
		// the deadline once, not once per provider.
		errs := make([]error, len(shutdowns))
		var wg sync.WaitGroup
		for i, f := range shutdowns {
			wg.Go(func() { errs[i] = f(ctx) })
		}
		wg.Wait()
		return errors.Join(errs...)
	}

	if traces {
		// The exporter connects lazily, so an unreachable collector does not
		// fail start-up; spans are dropped (and counted by the SDK) instead.
		exp, err := otlptracegrpc.New(ctx)
		if err != nil {
			return t, fmt.Errorf("telemetry: OTLP trace exporter: %w", err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
		shutdowns = append(shutdowns, tp.Shutdown)
		otel.SetTracerProvider(tp)
	}
	prom, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		_ = shutdownAll(ctx)
		return t, fmt.Errorf("telemetry: Prometheus exporter: %w", err)
	}
	mopts := []sdkmetric.Option{sdkmetric.WithReader(prom), sdkmetric.WithResource(res)}
	if otlpMetrics {
		exp, err := otlpmetricgrpc.New(ctx)
		if err != nil {
			_ = shutdownAll(ctx)
			return t, fmt.Errorf("telemetry: OTLP metric exporter: %w", err)
		}
		mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
	}
	mp := sdkmetric.NewMeterProvider(mopts...)
	shutdowns = append(shutdowns, mp.Shutdown)
	otel.SetMeterProvider(mp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(
		propagation.TraceContext{}, propagation.Baggage{},
	))
	t.Shutdown = shutdownAll
	if traces || otlpMetrics {
		logger.Info("telemetry on: exporting over OTLP/gRPC", "traces", traces, "metrics", otlpMetrics, "service", serviceName)
	} else {
		logger.Debug("traces off: set " + envEndpoint + " to export traces (and metrics) over OTLP; metrics are on /metrics")
	}
	return t, nil
}

// promLog sends the Prometheus handler's errors to slog.
type promLog struct{ logger *slog.Logger }

func (l promLog) Println(v ...any) { l.logger.Warn("telemetry: /metrics", "err", fmt.Sprint(v...)) }

// ShutdownTimeout bounds the final flush of Start's stop function: a
// stopping process waits no longer than this for a collector, so that it
// exits promptly even when the collector is gone.
const ShutdownTimeout = time.Second

// Start is Setup for a command's main: it returns a stop function that
// flushes and shuts the providers down within ShutdownTimeout, logging a
// failure, and the /metrics handler.
func Start(ctx context.Context, logger *slog.Logger, serviceName string) (stop func(), metrics http.Handler, err error) {
	t, err := Setup(ctx, logger, serviceName)
	if err != nil {
		return nil, nil, err
	}
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		defer cancel()
		if err := t.Shutdown(sctx); err != nil {
			logger.Warn("telemetry shutdown", "err", err)
		}
	}, t.Metrics, nil
}
