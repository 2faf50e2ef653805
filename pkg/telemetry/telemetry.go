// Package telemetry sets up OpenTelemetry for a Passerelle process: traces and
// metrics exported over OTLP/gRPC when the standard OTEL_* environment
// variables ask for it, and nothing at all otherwise.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
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

// Setup installs OpenTelemetry providers as the otel globals (tracer
// provider, meter provider, W3C trace-context + baggage propagator) when
// OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
// OTEL_EXPORTER_OTLP_METRICS_ENDPOINT is set; otherwise it leaves the no-op
// globals in place. serviceName becomes the resource's service.name unless
// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES says otherwise.
//
// The returned shutdown flushes and stops what was installed; it returns
// when ctx is done at the latest. It is never nil, and safe to call when
// telemetry is off.
func Setup(ctx context.Context, logger *slog.Logger, serviceName string) (shutdown func(context.Context) error, err error) {
	noop := func(context.Context) error { return nil }
	if strings.EqualFold(os.Getenv(envSDKDisabled), "true") {
		logger.Debug("telemetry off: OTEL_SDK_DISABLED is true")
		return noop, nil
	}
	traces := os.Getenv(envEndpoint) != "" || os.Getenv(envTracesEndpoint) != ""
	metrics := os.Getenv(envEndpoint) != "" || os.Getenv(envMetricsEndpoint) != ""
	if !traces && !metrics {
		logger.Debug("telemetry off: set " + envEndpoint + " to export traces and metrics over OTLP")
		return noop, nil
	}

	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", serviceName)),
		resource.WithTelemetrySDK(),
		// Later detectors win: the environment overrides serviceName.
		resource.WithFromEnv(),
	)
	if err != nil {
		return noop, fmt.Errorf("telemetry: build resource: %w", err)
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
			return noop, fmt.Errorf("telemetry: OTLP trace exporter: %w", err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
		shutdowns = append(shutdowns, tp.Shutdown)
		otel.SetTracerProvider(tp)
	}
	if metrics {
		exp, err := otlpmetricgrpc.New(ctx)
		if err != nil {
			_ = shutdownAll(ctx)
			return noop, fmt.Errorf("telemetry: OTLP metric exporter: %w", err)
		}
		mp := sdkmetric.NewMeterProvider(
			sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)),
			sdkmetric.WithResource(res),
		)
		shutdowns = append(shutdowns, mp.Shutdown)
		otel.SetMeterProvider(mp)
	}
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(
		propagation.TraceContext{}, propagation.Baggage{},
	))
	logger.Info("telemetry on: exporting over OTLP/gRPC", "traces", traces, "metrics", metrics, "service", serviceName)
	return shutdownAll, nil
}

// ShutdownTimeout bounds the final flush of Start's stop function: a
// stopping process waits no longer than this for a collector, so that it
// exits promptly even when the collector is gone.
const ShutdownTimeout = time.Second

// Start is Setup for a command's main: it returns a stop function that
// flushes and shuts the providers down within ShutdownTimeout, logging a
// failure.
func Start(ctx context.Context, logger *slog.Logger, serviceName string) (stop func(), err error) {
	shutdown, err := Setup(ctx, logger, serviceName)
	if err != nil {
		return nil, err
	}
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		defer cancel()
		if err := shutdown(sctx); err != nil {
			logger.Warn("telemetry shutdown", "err", err)
		}
	}, nil
}
