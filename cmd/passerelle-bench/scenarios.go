package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	iot "cloud.google.com/go/iot/apiv1"
	"cloud.google.com/go/iot/apiv1/iotpb"
)

// result is one scenario's figures, in the order they are printed.
type result struct {
	Scenario string
	Target   string
	keys     []string
	vals     map[string]float64
}

func newResult(scenario, target string) *result {
	return &result{Scenario: scenario, Target: target, vals: map[string]float64{}}
}

func (r *result) set(k string, v float64) {
	if _, ok := r.vals[k]; !ok {
		r.keys = append(r.keys, k)
	}
	r.vals[k] = v
}

// connectAll connects devices 0..n-1 with c workers; it returns the
// connections (nil where the connect failed), the failures and the time
// from the first dial to the last CONNACK.
func connectAll(ctx context.Context, log *slog.Logger, t *target, n, c int) ([]*mqttConn, int, time.Duration) {
	conns := make([]*mqttConn, n)
	var next, failed atomic.Int64
	var logged atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				mc, err := t.dial(ctx, i)
				if err != nil {
					failed.Add(1)
					if logged.Add(1) <= 5 {
						log.Warn("connect failed", "device", deviceID(i), "err", err)
					}
					continue
				}
				conns[i] = mc
			}
		}()
	}
	wg.Wait()
	return conns, int(failed.Load()), time.Since(start)
}

func closeAll(conns []*mqttConn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// runConnect: n devices connect with concurrency c; connects per second.
func runConnect(ctx context.Context, log *slog.Logger, t *target, n, c, pid int) *result {
	self0, mach0 := selfCPUSeconds(), machineBusySeconds()
	var cpu0 float64
	if pid != 0 {
		cpu0, _ = cpuSeconds(pid)
	}
	conns, failed, d := connectAll(ctx, log, t, n, c)
	self1, mach1 := selfCPUSeconds(), machineBusySeconds()
	var cpu1 float64
	if pid != 0 {
		cpu1, _ = cpuSeconds(pid)
	}
	closeAll(conns)
	r := newResult("connect", t.name)
	r.set("devices", float64(n))
	r.set("concurrency", float64(c))
	r.set("failed", float64(failed))
	r.set("seconds", d.Seconds())
	r.set("connects_per_s", float64(n-failed)/d.Seconds())
	r.set("loadgen_cpu_s", self1-self0)
	if pid != 0 && n > failed {
		r.set("target_cpu_s", cpu1-cpu0)
		r.set("target_cpu_us_per_connect", (cpu1-cpu0)/float64(n-failed)*1e6)
		r.set("other_cpu_s", max(0, (mach1-mach0)-(cpu1-cpu0)-(self1-self0)))
	}
	return r
}

// runIdle: n devices connect and stay; the target's memory per connection.
// With rounds, every device first connects and disconnects that many
// times (the churn after which a process may keep freed memory); with
// baseline, memory is counted from that RSS rather than from the RSS at
// the start.
func runIdle(ctx context.Context, log *slog.Logger, t *target, n, c, pid int, settle time.Duration, rounds int, baseline int64) (*result, error) {
	if pid == 0 {
		return nil, errors.New("idle needs --target-pid")
	}
	if rounds < 0 {
		return nil, errors.New("--rounds must not be negative")
	}
	before, err := rssKiB(pid)
	if err != nil {
		return nil, err
	}
	if baseline > 0 {
		before = baseline
	}
	churnFailed := 0
	for range rounds {
		conns, failed, _ := connectAll(ctx, log, t, n, c)
		closeAll(conns)
		churnFailed += failed
		// The broker learns of the closes a moment later: let it release
		// them before the next round, or it may still count them against
		// its connection cap.
		time.Sleep(time.Second)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	conns, failed, d := connectAll(ctx, log, t, n, c)
	defer closeAll(conns)
	held := n - failed
	// Sample a few times while the target settles (GC, lazily grown
	// buffers): report the last sample, and the spread.
	var samples []int64
	deadline := time.Now().Add(settle)
	for {
		kib, err := rssKiB(pid)
		if err != nil {
			return nil, err
		}
		samples = append(samples, kib)
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	after := samples[len(samples)-1]
	r := newResult("idle", t.name)
	r.set("connections", float64(held))
	r.set("failed", float64(failed))
	r.set("rounds", float64(rounds))
	r.set("churn_failed", float64(churnFailed))
	r.set("connect_s", d.Seconds())
	r.set("rss_before_kib", float64(before))
	r.set("rss_after_kib", float64(after))
	r.set("rss_min_kib", float64(slices.Min(samples)))
	r.set("rss_max_kib", float64(slices.Max(samples)))
	if held > 0 {
		r.set("kib_per_conn", float64(after-before)/float64(held))
	}
	return r, nil
}

// runTelemetry: d devices publish QoS 1, size-byte payloads, each keeping
// window messages in flight, for dur; PUBACKs per second and, with a pid,
// the target's CPU per message.
//
// At QoS 0 there is no acknowledgement to count: each device sends window
// messages and a PINGREQ, and counts the window once the PINGRESP is back
// (a broker reads a connection's packets in order), so no more than
// window messages of a device wait in the broker's socket buffers.
func runTelemetry(ctx context.Context, log *slog.Logger, t *target, d, c, window, size, qos, pid int, dur time.Duration) (*result, error) {
	if window < 1 || window > 65535 {
		return nil, errors.New("--window must be 1 to 65535")
	}
	if qos != 0 && qos != 1 {
		return nil, errors.New("--qos must be 0 or 1")
	}
	conns, failed, _ := connectAll(ctx, log, t, d, c)
	defer closeAll(conns)
	if failed > 0 {
		return nil, fmt.Errorf("%d of %d devices failed to connect", failed, d)
	}
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	var cpu0 float64
	if pid != 0 {
		var err error
		if cpu0, err = cpuSeconds(pid); err != nil {
			return nil, err
		}
	}
	self0, mach0 := selfCPUSeconds(), machineBusySeconds()
	var acked, errs atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(dur)
	for i, mc := range conns {
		wg.Add(1)
		if qos == 0 {
			go func() {
				defer wg.Done()
				if err := sendQoS0(mc, "/devices/"+deviceID(i)+"/events", payload, window, end, &acked); err != nil && !stop.Load() {
					if errs.Add(1) <= 5 {
						log.Warn("telemetry connection failed", "device", deviceID(i), "err", err)
					}
				}
			}()
			continue
		}
		go func() {
			defer wg.Done()
			topic := "/devices/" + deviceID(i) + "/events"
			pid := uint16(0)
			send := func() {
				pid++
				if pid == 0 {
					pid = 1
				}
				mc.publish(topic, pid, 1, payload)
			}
			for range window {
				send()
			}
			if err := mc.flush(); err != nil {
				errs.Add(1)
				return
			}
			inflight := window
			// After the end, wait a little for what is in flight so the
			// broker is quiet for the next run, but count nothing more.
			_ = mc.nc.SetReadDeadline(end.Add(5 * time.Second))
			for inflight > 0 {
				h, _, err := mc.readPacket()
				if err != nil {
					if !stop.Load() {
						errs.Add(1)
						if errs.Load() <= 5 {
							log.Warn("telemetry connection failed", "device", deviceID(i), "err", err)
						}
					}
					return
				}
				if h>>4 != pktPuback {
					continue
				}
				inflight--
				if time.Now().Before(end) {
					acked.Add(1)
					send()
					inflight++
					if err := mc.flush(); err != nil {
						errs.Add(1)
						return
					}
				}
			}
		}()
	}
	select {
	case <-time.After(time.Until(end)):
	case <-ctx.Done():
	}
	n := acked.Load()
	elapsed := time.Since(start)
	self1, mach1 := selfCPUSeconds(), machineBusySeconds()
	var cpu1 float64
	if pid != 0 {
		cpu1, _ = cpuSeconds(pid)
	}
	stop.Store(true)
	wg.Wait()
	r := newResult("telemetry", t.name)
	r.set("devices", float64(d))
	r.set("window", float64(window))
	r.set("qos", float64(qos))
	r.set("payload_bytes", float64(size))
	r.set("seconds", elapsed.Seconds())
	r.set("acked", float64(n))
	r.set("conn_errors", float64(errs.Load()))
	r.set("msgs_per_s", float64(n)/elapsed.Seconds())
	r.set("loadgen_cpu_s", self1-self0)
	if pid != 0 && n > 0 {
		r.set("target_cpu_s", cpu1-cpu0)
		r.set("target_cpu_us_per_msg", (cpu1-cpu0)/float64(n)*1e6)
		if cpu1 > cpu0 {
			r.set("msgs_per_target_cpu_s", float64(n)/(cpu1-cpu0))
		}
		r.set("other_cpu_s", max(0, (mach1-mach0)-(cpu1-cpu0)-(self1-self0)))
	}
	return r, nil
}

// sendQoS0 sends window QoS 0 messages and a PINGREQ, waits for the
// PINGRESP, and counts the window in acked, until end.
func sendQoS0(mc *mqttConn, topic string, payload []byte, window int, end time.Time, acked *atomic.Int64) error {
	_ = mc.nc.SetReadDeadline(end.Add(5 * time.Second))
	for time.Now().Before(end) {
		for range window {
			mc.publish(topic, 0, 0, payload)
		}
		mc.pingreq()
		if err := mc.flush(); err != nil {
			return err
		}
		for {
			h, _, err := mc.readPacket()
			if err != nil {
				return err
			}
			if h>>4 == pktPingresp {
				break
			}
		}
		if time.Now().Before(end) {
			acked.Add(int64(window))
		}
	}
	return nil
}

// configMagic starts the bench's config payloads: magic, run id, sequence
// number.
const configMagic = "BNCH"

// runConfig: d devices subscribe to their config topic at QoS 1; configs
// are modified at rate per second over dur, round robin over the devices;
// the latency from ModifyCloudToDeviceConfig returning to the device
// receiving that version.
func runConfig(ctx context.Context, log *slog.Logger, t *target, admin *iot.DeviceManagerClient, d, c int, rate float64, dur, grace time.Duration) (*result, error) {
	if rate > float64(d) {
		return nil, fmt.Errorf("--rate %.0f over %d devices would update a device more than once a second (the manager refuses that): lower --rate or raise --devices", rate, d)
	}
	conns, failed, _ := connectAll(ctx, log, t, d, c)
	defer closeAll(conns)
	if failed > 0 {
		return nil, fmt.Errorf("%d of %d devices failed to connect", failed, d)
	}
	total := int(rate * dur.Seconds())
	// A run id in each payload: a device's latest config from an earlier
	// run arrives right after SUBACK and must not count.
	runID := uint64(time.Now().UnixNano())
	startedAt := make([]atomic.Int64, total)  // unix ns the RPC was made
	returnedAt := make([]atomic.Int64, total) // unix ns it returned, 0: failed
	receivedAt := make([]atomic.Int64, total) // unix ns the device got it
	var subErrs atomic.Int64
	var wg sync.WaitGroup
	subscribed := make(chan error, len(conns))
	for i, mc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mc.subscribe(1, "/devices/"+deviceID(i)+"/config", 1)
			if err := mc.flush(); err != nil {
				subscribed <- err
				return
			}
			acked := false
			for {
				h, body, err := mc.readPacket()
				if err != nil {
					if !acked {
						subscribed <- err
					}
					return
				}
				switch h >> 4 {
				case pktSuback:
					if !acked {
						acked = true
						if len(body) < 3 || body[2] == 0x80 {
							subscribed <- errors.New("SUBACK refused the config topic")
							return
						}
						subscribed <- nil
					}
				case pktPublish:
					now := time.Now().UnixNano()
					_, pid, payload, err := parsePublish(h, body)
					if err != nil {
						subErrs.Add(1)
						return
					}
					if (h>>1)&3 > 0 {
						mc.puback(pid)
						if err := mc.flush(); err != nil {
							return
						}
					}
					if len(payload) >= 20 && string(payload[:4]) == configMagic && binary.BigEndian.Uint64(payload[4:12]) == runID {
						seq := binary.BigEndian.Uint64(payload[12:20])
						if seq < uint64(total) {
							receivedAt[seq].CompareAndSwap(0, now)
						}
					}
				}
			}
		}()
	}
	for range conns {
		if err := <-subscribed; err != nil {
			return nil, fmt.Errorf("subscribe: %w", err)
		}
	}
	// A pool of callers, fed at the given rate: a slow RPC delays only its
	// own caller, not the schedule.
	jobs := make(chan int, total)
	var rpcErrs atomic.Int64
	var callers sync.WaitGroup
	for range 64 {
		callers.Add(1)
		go func() {
			defer callers.Done()
			for seq := range jobs {
				dev := seq % d
				payload := make([]byte, 20)
				copy(payload, configMagic)
				binary.BigEndian.PutUint64(payload[4:], runID)
				binary.BigEndian.PutUint64(payload[12:], uint64(seq))
				startedAt[seq].Store(time.Now().UnixNano())
				_, err := admin.ModifyCloudToDeviceConfig(ctx, &iotpb.ModifyCloudToDeviceConfigRequest{
					Name:       t.registryName() + "/devices/" + deviceID(dev),
					BinaryData: payload,
				})
				if err != nil {
					if rpcErrs.Add(1) <= 5 {
						log.Warn("ModifyCloudToDeviceConfig failed", "device", deviceID(dev), "err", err)
					}
					continue
				}
				returnedAt[seq].Store(time.Now().UnixNano())
			}
		}()
	}
	start := time.Now()
	for seq := range total {
		at := start.Add(time.Duration(float64(seq) / rate * float64(time.Second)))
		if w := time.Until(at); w > 0 {
			time.Sleep(w) // pacing the schedule
		}
		jobs <- seq
	}
	close(jobs)
	callers.Wait()
	sendSeconds := time.Since(start).Seconds()
	// Wait for stragglers, polling, up to grace.
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		missing := 0
		for seq := range total {
			if returnedAt[seq].Load() != 0 && receivedAt[seq].Load() == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond) // polling for late deliveries
	}
	var lat, latCall, rpc []float64
	lost, early, sent := 0, 0, 0
	for seq := range total {
		ret := returnedAt[seq].Load()
		if ret == 0 {
			continue
		}
		sent++
		rpc = append(rpc, float64(ret-startedAt[seq].Load())/1e6)
		rcv := receivedAt[seq].Load()
		if rcv == 0 {
			lost++
			continue
		}
		ms := float64(rcv-ret) / 1e6
		if ms < 0 {
			// The device had it before the RPC's answer reached the
			// tool: the announcement beat the response.
			early++
			ms = 0
		}
		lat = append(lat, ms)
		latCall = append(latCall, float64(rcv-startedAt[seq].Load())/1e6)
	}
	r := newResult("config", t.name)
	r.set("devices", float64(d))
	r.set("target_rate", rate)
	r.set("updates_per_s", float64(sent)/sendSeconds)
	r.set("sent", float64(sent))
	r.set("rpc_errors", float64(rpcErrs.Load()))
	r.set("lost", float64(lost))
	r.set("before_return", float64(early))
	r.set("p50_ms", percentile(lat, 50))
	r.set("p90_ms", percentile(lat, 90))
	r.set("p99_ms", percentile(lat, 99))
	r.set("max_ms", percentile(lat, 100))
	r.set("p99_from_call_ms", percentile(latCall, 99))
	r.set("rpc_p50_ms", percentile(rpc, 50))
	r.set("rpc_p99_ms", percentile(rpc, 99))
	for _, mc := range conns {
		mc.Close()
	}
	wg.Wait()
	return r, nil
}

// percentile of xs (sorted in place), nearest rank; NaN when empty.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	slices.Sort(xs)
	i := int(math.Ceil(p/100*float64(len(xs)))) - 1
	return xs[max(0, min(i, len(xs)-1))]
}

// format prints a float compactly for the table.
func format(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatInt(int64(v), 10)
	}
	if math.Abs(v) >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}
