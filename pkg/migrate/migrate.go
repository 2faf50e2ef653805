package migrate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	iot "cloud.google.com/go/iot/apiv1"
	"cloud.google.com/go/iot/apiv1/iotpb"
	"github.com/googleapis/gax-go/v2"
	"golang.org/x/sync/errgroup"
	"google.golang.org/api/googleapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// Options tune a run.
type Options struct {
	// Concurrency is the most calls in flight to the target (default 16).
	Concurrency int
	// DryRun plans without writing: the report says what would be done.
	DryRun bool
	// ConfigHistory replays the source's kept config versions, oldest
	// first, into a device the target does not have yet (the target
	// allows one config write per second per device, so this is slow);
	// otherwise only the latest config is copied.
	ConfigHistory bool
	// Project, when set, replaces the project of every copied name.
	Project string
	// Progress, when set, is told of each device done (failed or not).
	Progress func(failed bool)
	// Started, when set, is told how many devices the run will look at.
	Started func(devices int)
	// CallOptions are added to every target call (retries with backoff).
	CallOptions []gax.CallOption
}

// Action is what a run did (or, dry, would do) with one resource.
type Action string

// The actions.
const (
	Created Action = "created"
	Updated Action = "updated"
	Skipped Action = "skipped"
	Failed  Action = "failed"
)

// Item is one line of the report.
type Item struct {
	Kind   string `json:"kind"` // registry, device, binding, config
	Name   string `json:"name"`
	Action Action `json:"action"`
	Reason string `json:"reason,omitempty"`
	OldNum uint64 `json:"oldNumId,omitempty,string"`
	NewNum uint64 `json:"newNumId,omitempty,string"`
}

// Report is what a run did.
type Report struct {
	DryRun   bool                      `json:"dryRun,omitempty"`
	Counts   map[string]map[Action]int `json:"counts"` // kind -> action -> n
	Items    []Item                    `json:"items"`  // every resource but skipped ones
	Duration time.Duration             `json:"-"`

	mu sync.Mutex
}

func (r *Report) add(it Item) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Counts[it.Kind] == nil {
		r.Counts[it.Kind] = map[Action]int{}
	}
	r.Counts[it.Kind][it.Action]++
	if it.Action != Skipped || it.Reason != "" {
		r.Items = append(r.Items, it)
	}
}

// Failed is the number of resources that could not be copied.
func (r *Report) Failed() int {
	n := 0
	for _, c := range r.Counts {
		n += c[Failed]
	}
	return n
}

// Summary is the counts as text, one line per kind.
func (r *Report) Summary() string {
	var b strings.Builder
	for _, kind := range []string{"registry", "device", "config", "binding"} {
		c := r.Counts[kind]
		fmt.Fprintf(&b, "%-10s created %d, updated %d, skipped %d, failed %d\n", kind+"s", c[Created], c[Updated], c[Skipped], c[Failed])
	}
	return b.String()
}

type run struct {
	logger *slog.Logger
	src    Source
	dst    *iot.DeviceManagerClient
	opts   Options
	report *Report
}

// Run copies src into dst.
func Run(ctx context.Context, logger *slog.Logger, src Source, dst *iot.DeviceManagerClient, opts Options) (*Report, error) {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 16
	}
	start := time.Now()
	r := &run{logger: logger, src: src, dst: dst, opts: opts, report: &Report{DryRun: opts.DryRun, Counts: map[string]map[Action]int{}}}
	regs, err := src.Registries(ctx)
	if err != nil {
		return r.report, err
	}
	type plan struct {
		reg     *iotpb.DeviceRegistry
		devices []*iotpb.Device
	}
	plans := make([]plan, 0, len(regs))
	total := 0
	for _, reg := range regs {
		devices, err := src.Devices(ctx, reg.Name)
		if err != nil {
			return r.report, err
		}
		plans = append(plans, plan{reg, devices})
		total += len(devices)
	}
	if opts.Started != nil {
		opts.Started(total)
	}
	for _, p := range plans {
		if err := r.registry(ctx, p.reg, p.devices); err != nil {
			return r.report, err
		}
	}
	r.report.Duration = time.Since(start)
	return r.report, ctx.Err()
}

// rename moves a name to the target project.
func (r *run) rename(name string) string {
	if r.opts.Project == "" || !strings.HasPrefix(name, "projects/") {
		return name
	}
	rest := strings.TrimPrefix(name, "projects/")
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		return "projects/" + r.opts.Project + rest[i:]
	}
	return name
}

// registry copies one registry, then its devices, then its bindings.
func (r *run) registry(ctx context.Context, reg *iotpb.DeviceRegistry, devices []*iotpb.Device) error {
	name := r.rename(reg.Name)
	parent := name[:strings.LastIndex(name, "/registries/")]
	want := &iotpb.DeviceRegistry{
		Id:                       reg.Id,
		EventNotificationConfigs: reg.EventNotificationConfigs,
		StateNotificationConfig:  reg.StateNotificationConfig,
		MqttConfig:               reg.MqttConfig,
		HttpConfig:               reg.HttpConfig,
		LogLevel:                 reg.LogLevel,
		Credentials:              reg.Credentials,
	}
	have, err := r.dst.GetDeviceRegistry(ctx, &iotpb.GetDeviceRegistryRequest{Name: name}, r.opts.CallOptions...)
	switch {
	case status.Code(err) == codes.NotFound:
		if !r.opts.DryRun {
			if _, err := r.dst.CreateDeviceRegistry(ctx, &iotpb.CreateDeviceRegistryRequest{Parent: parent, DeviceRegistry: want}, r.opts.CallOptions...); err != nil && status.Code(err) != codes.AlreadyExists {
				r.report.add(Item{Kind: "registry", Name: name, Action: Failed, Reason: reason(err)})
				// Its devices cannot be copied; they are reported once
				// each so the report accounts for every one.
				for _, d := range devices {
					r.report.add(Item{Kind: "device", Name: name + "/devices/" + d.Id, Action: Failed, Reason: "its registry could not be created"})
					r.progress(true)
				}
				return ctx.Err()
			}
		}
		r.report.add(Item{Kind: "registry", Name: name, Action: Created})
		have = nil
	case err != nil:
		return fmt.Errorf("read registry %s from the target: %w", name, err)
	default:
		paths := registryDiff(want, have)
		if len(paths) == 0 {
			r.report.add(Item{Kind: "registry", Name: name, Action: Skipped})
			break
		}
		want.Name = name
		if !r.opts.DryRun {
			if _, err := r.dst.UpdateDeviceRegistry(ctx, &iotpb.UpdateDeviceRegistryRequest{DeviceRegistry: want, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}}, r.opts.CallOptions...); err != nil {
				r.report.add(Item{Kind: "registry", Name: name, Action: Failed, Reason: reason(err)})
				break
			}
		}
		r.report.add(Item{Kind: "registry", Name: name, Action: Updated, Reason: "changed: " + strings.Join(paths, ", ")})
	}
	existing := map[string]*iotpb.Device{}
	if have != nil || !r.opts.DryRun {
		list, err := listAll(ctx, r.dst, &iotpb.ListDevicesRequest{Parent: name, FieldMask: FullDeviceMask(), PageSize: 10000}, r.opts.CallOptions)
		if err != nil && status.Code(err) != codes.NotFound {
			return fmt.Errorf("list the target's devices: %w", err)
		}
		for _, d := range list {
			existing[d.Id] = d
		}
	}
	copied := map[string]bool{}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.opts.Concurrency)
	for _, d := range devices {
		g.Go(func() error {
			ok := r.device(gctx, name, d, existing[d.Id])
			mu.Lock()
			copied[d.Id] = ok
			mu.Unlock()
			r.progress(!ok)
			return gctx.Err()
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return r.bindings(ctx, reg.Name, name, devices, copied)
}

func (r *run) progress(failed bool) {
	if r.opts.Progress != nil {
		r.opts.Progress(failed)
	}
}

// registryDiff lists the update-mask paths where have differs from want.
func registryDiff(want, have *iotpb.DeviceRegistry) []string {
	var paths []string
	if !equalList(want.EventNotificationConfigs, have.EventNotificationConfigs) {
		paths = append(paths, "event_notification_configs")
	}
	if !proto.Equal(orEmpty(want.StateNotificationConfig), orEmpty(have.StateNotificationConfig)) {
		paths = append(paths, "state_notification_config")
	}
	if want.GetMqttConfig().GetMqttEnabledState() != have.GetMqttConfig().GetMqttEnabledState() {
		paths = append(paths, "mqtt_config")
	}
	if want.GetHttpConfig().GetHttpEnabledState() != have.GetHttpConfig().GetHttpEnabledState() {
		paths = append(paths, "http_config")
	}
	if want.LogLevel != have.LogLevel {
		paths = append(paths, "log_level")
	}
	if !sameCerts(want.Credentials, have.Credentials) {
		paths = append(paths, "credentials")
	}
	return paths
}

func orEmpty(c *iotpb.StateNotificationConfig) *iotpb.StateNotificationConfig {
	if c == nil || c.PubsubTopicName == "" {
		return &iotpb.StateNotificationConfig{}
	}
	return c
}

func equalList[M proto.Message](a, b []M) bool {
	return slices.EqualFunc(a, b, func(x, y M) bool { return proto.Equal(x, y) })
}

// sameCerts compares registry certificates by their PEM (the target adds
// the parsed x509Details).
func sameCerts(a, b []*iotpb.RegistryCredential) bool {
	return slices.EqualFunc(a, b, func(x, y *iotpb.RegistryCredential) bool {
		return strings.TrimSpace(x.GetPublicKeyCertificate().GetCertificate()) == strings.TrimSpace(y.GetPublicKeyCertificate().GetCertificate())
	})
}

// device copies one device; it reports whether the target has it after.
func (r *run) device(ctx context.Context, registry string, src, have *iotpb.Device) bool {
	name := registry + "/devices/" + src.Id
	want := &iotpb.Device{
		Id:          src.Id,
		Credentials: src.Credentials,
		Blocked:     src.Blocked,
		Metadata:    src.Metadata,
		LogLevel:    src.LogLevel,
	}
	if gc := src.GatewayConfig; gc != nil && (gc.GatewayType != 0 || gc.GatewayAuthMethod != 0) {
		want.GatewayConfig = &iotpb.GatewayConfig{GatewayType: gc.GatewayType, GatewayAuthMethod: gc.GatewayAuthMethod}
	}
	var history []*iotpb.DeviceConfig
	if r.opts.ConfigHistory && have == nil {
		versions, err := r.src.ConfigVersions(ctx, src.Name)
		if err != nil {
			r.logger.Warn("cannot read the config versions; copying the latest only", "device", src.Id, "err", err)
		}
		history = slices.Clone(versions)
		sort.Slice(history, func(i, j int) bool { return history[i].Version < history[j].Version })
	}
	if have == nil {
		// The oldest kept version (or the latest config) goes in the
		// create; later versions are replayed after it.
		if len(history) > 0 {
			want.Config = &iotpb.DeviceConfig{BinaryData: history[0].BinaryData}
			history = history[1:]
		} else if len(src.GetConfig().GetBinaryData()) > 0 {
			want.Config = &iotpb.DeviceConfig{BinaryData: src.Config.BinaryData}
		}
		var created *iotpb.Device
		if !r.opts.DryRun {
			var err error
			created, err = r.dst.CreateDevice(ctx, &iotpb.CreateDeviceRequest{Parent: registry, Device: want}, r.opts.CallOptions...)
			if err != nil {
				r.report.add(Item{Kind: "device", Name: name, Action: Failed, Reason: reason(err), OldNum: src.NumId})
				return false
			}
		}
		r.report.add(Item{Kind: "device", Name: name, Action: Created, OldNum: src.NumId, NewNum: created.GetNumId()})
		if want.Config != nil {
			r.report.add(Item{Kind: "config", Name: name, Action: Created})
		}
		r.replay(ctx, name, history)
		return true
	}
	if have.GetGatewayConfig().GetGatewayType() != want.GetGatewayConfig().GetGatewayType() &&
		!(isNonGateway(have) && isNonGateway(want)) {
		r.report.add(Item{Kind: "device", Name: name, Action: Failed, OldNum: src.NumId, NewNum: have.NumId,
			Reason: fmt.Sprintf("the target's device is %s, the source's %s; a device's type is fixed at creation, delete it on the target to copy it", have.GetGatewayConfig().GetGatewayType(), want.GetGatewayConfig().GetGatewayType())})
		return false
	}
	paths := deviceDiff(want, have)
	ok := true
	if len(paths) == 0 {
		r.report.add(Item{Kind: "device", Name: name, Action: Skipped, OldNum: src.NumId, NewNum: have.NumId})
	} else {
		want.Name = name
		want.Id = ""
		var err error
		if !r.opts.DryRun {
			_, err = r.dst.UpdateDevice(ctx, &iotpb.UpdateDeviceRequest{Device: want, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}}, r.opts.CallOptions...)
		}
		if err != nil {
			r.report.add(Item{Kind: "device", Name: name, Action: Failed, Reason: reason(err), OldNum: src.NumId, NewNum: have.NumId})
			ok = false
		} else {
			r.report.add(Item{Kind: "device", Name: name, Action: Updated, Reason: "changed: " + strings.Join(paths, ", "), OldNum: src.NumId, NewNum: have.NumId})
		}
	}
	data := src.GetConfig().GetBinaryData()
	switch {
	case bytes.Equal(data, have.GetConfig().GetBinaryData()):
		r.report.add(Item{Kind: "config", Name: name, Action: Skipped})
	case r.opts.DryRun:
		r.report.add(Item{Kind: "config", Name: name, Action: Updated})
	default:
		if _, err := r.dst.ModifyCloudToDeviceConfig(ctx, &iotpb.ModifyCloudToDeviceConfigRequest{Name: name, BinaryData: data}, r.opts.CallOptions...); err != nil {
			r.report.add(Item{Kind: "config", Name: name, Action: Failed, Reason: reason(err)})
		} else {
			r.report.add(Item{Kind: "config", Name: name, Action: Updated})
		}
	}
	return ok
}

// replay writes config versions, oldest first, after the device's first.
func (r *run) replay(ctx context.Context, name string, sorted []*iotpb.DeviceConfig) {
	if len(sorted) == 0 {
		return
	}
	for _, v := range sorted {
		if r.opts.DryRun {
			continue
		}
		if _, err := r.dst.ModifyCloudToDeviceConfig(ctx, &iotpb.ModifyCloudToDeviceConfigRequest{Name: name, BinaryData: v.BinaryData}, r.opts.CallOptions...); err != nil {
			r.report.add(Item{Kind: "config", Name: name, Action: Failed, Reason: fmt.Sprintf("version %d: %s", v.Version, reason(err))})
			return
		}
	}
	r.report.add(Item{Kind: "config", Name: name, Action: Created, Reason: fmt.Sprintf("%d more versions", len(sorted))})
}

func isNonGateway(d *iotpb.Device) bool {
	return d.GetGatewayConfig().GetGatewayType() != iotpb.GatewayType_GATEWAY
}

// deviceDiff lists the update-mask paths where have differs from want.
func deviceDiff(want, have *iotpb.Device) []string {
	var paths []string
	if !slices.EqualFunc(want.Credentials, have.Credentials, func(x, y *iotpb.DeviceCredential) bool {
		return strings.TrimSpace(x.GetPublicKey().GetKey()) == strings.TrimSpace(y.GetPublicKey().GetKey()) &&
			x.GetPublicKey().GetFormat() == y.GetPublicKey().GetFormat() &&
			x.GetExpirationTime().AsTime().Equal(y.GetExpirationTime().AsTime())
	}) {
		paths = append(paths, "credentials")
	}
	if want.Blocked != have.Blocked {
		paths = append(paths, "blocked")
	}
	if !mapsEqual(want.Metadata, have.Metadata) {
		paths = append(paths, "metadata")
	}
	if want.LogLevel != have.LogLevel {
		paths = append(paths, "log_level")
	}
	if want.GetGatewayConfig().GetGatewayAuthMethod() != have.GetGatewayConfig().GetGatewayAuthMethod() {
		paths = append(paths, "gateway_config.gateway_auth_method")
	}
	return paths
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// bindings binds, on the target, what the source has bound and the
// target has not; a binding whose device or gateway could not be copied
// fails with that reason.
func (r *run) bindings(ctx context.Context, srcRegistry, registry string, devices []*iotpb.Device, copied map[string]bool) error {
	var gateways []*iotpb.Device
	for _, d := range devices {
		if d.GetGatewayConfig().GetGatewayType() == iotpb.GatewayType_GATEWAY {
			gateways = append(gateways, d)
		}
	}
	want, err := r.src.Bindings(ctx, srcRegistry, gateways)
	if err != nil {
		return err
	}
	if len(want) == 0 {
		return nil
	}
	have := map[Binding]bool{}
	byGateway := map[string]bool{}
	for _, b := range want {
		byGateway[b.Gateway] = true
	}
	for gw := range byGateway {
		if !copied[gw] || r.opts.DryRun && !copied[gw] {
			continue
		}
		bound, err := listAll(ctx, r.dst, &iotpb.ListDevicesRequest{Parent: registry, PageSize: 10000, GatewayListOptions: &iotpb.GatewayListOptions{
			Filter: &iotpb.GatewayListOptions_AssociationsGatewayId{AssociationsGatewayId: gw},
		}}, r.opts.CallOptions)
		if err != nil && status.Code(err) != codes.NotFound {
			return fmt.Errorf("list the target's bindings of %s: %w", gw, err)
		}
		for _, d := range bound {
			have[Binding{Gateway: gw, Device: d.Id}] = true
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.opts.Concurrency)
	for _, b := range want {
		name := registry + ": " + b.Device + " -> " + b.Gateway
		switch {
		case have[b]:
			r.report.add(Item{Kind: "binding", Name: name, Action: Skipped})
			continue
		case !copied[b.Gateway] && !r.opts.DryRun:
			r.report.add(Item{Kind: "binding", Name: name, Action: Failed, Reason: "the gateway was not copied"})
			continue
		case !copied[b.Device] && !r.opts.DryRun:
			r.report.add(Item{Kind: "binding", Name: name, Action: Failed, Reason: "the device was not copied"})
			continue
		case r.opts.DryRun:
			r.report.add(Item{Kind: "binding", Name: name, Action: Created})
			continue
		}
		g.Go(func() error {
			_, err := r.dst.BindDeviceToGateway(gctx, &iotpb.BindDeviceToGatewayRequest{Parent: registry, GatewayId: b.Gateway, DeviceId: b.Device}, r.opts.CallOptions...)
			if err != nil {
				r.report.add(Item{Kind: "binding", Name: name, Action: Failed, Reason: reason(err)})
			} else {
				r.report.add(Item{Kind: "binding", Name: name, Action: Created})
			}
			return gctx.Err()
		})
	}
	return g.Wait()
}

// reason is an error as the report shows it: CODE: message.
func reason(err error) string { return ErrorText(err) }

// Retry is the call option a run passes to honour the source's and the
// target's rate limits: RESOURCE_EXHAUSTED and UNAVAILABLE (gRPC), 429
// and 503 (REST) are retried with exponential backoff and jitter, up to
// 12 times.
func Retry() []gax.CallOption {
	return []gax.CallOption{gax.WithRetry(func() gax.Retryer {
		return &retryer{bo: gax.Backoff{Initial: 200 * time.Millisecond, Max: 10 * time.Second, Multiplier: 2}}
	})}
}

type retryer struct {
	bo    gax.Backoff
	tries int
}

func (r *retryer) Retry(err error) (time.Duration, bool) {
	if r.tries >= 12 || !Throttled(err) {
		return 0, false
	}
	r.tries++
	return r.bo.Pause(), true
}

// Throttled says whether err asks the caller to slow down.
func Throttled(err error) bool {
	var he *googleapi.Error
	if errors.As(err, &he) {
		return he.Code == http.StatusTooManyRequests || he.Code == http.StatusServiceUnavailable
	}
	switch status.Code(err) {
	case codes.ResourceExhausted, codes.Unavailable:
		return true
	}
	return false
}
