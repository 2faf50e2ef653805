package bridge_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/bridge"
)

// BenchmarkEvents100Devices compares, in one run on one bridge, the events
// per second of 100 devices sending as fast as they are answered: HTTP
// publishEvent over TLS keep-alive connections (one per device) and MQTT
// QoS 1 publishes over TLS (one connection per device, each publish
// waiting for its PUBACK). Rate limits are off; each answer means the
// stream holds the event. Compare the two events/s of the same run.
//
//	go test -run '^$' -bench BenchmarkEvents100Devices -benchtime 20000x ./services/bridge/
func BenchmarkEvents100Devices(b *testing.B) {
	keys(b)
	const devices = 100
	e := newHTTPEnv(b, bridge.WithMessageRate(0, 0), bridge.WithByteRate(0), bridge.WithHTTPRequestRate(0, 0))
	ids := make([]string, devices)
	for i := range ids {
		ids[i] = fmt.Sprintf("bench-%03d", i)
		e.createDevice(ids[i], ecKey, nil)
	}
	tok := ecKey.jwt(b)
	body := []byte(`{"binary_data": "` + b64("temperature=21.5;humidity=40") + `"}`)
	// run shares b.N events among the devices, each sending in turn.
	run := func(b *testing.B, send func(dev int) error) {
		var next atomic.Int64
		var wg sync.WaitGroup
		var failed atomic.Value
		b.ResetTimer()
		start := time.Now()
		for d := range devices {
			wg.Go(func() {
				for next.Add(1) <= int64(b.N) {
					if err := send(d); err != nil {
						failed.Store(err)
						return
					}
				}
			})
		}
		wg.Wait()
		b.StopTimer()
		if err, _ := failed.Load().(error); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	}

	b.Run("http", func(b *testing.B) {
		tr := &http.Transport{TLSClientConfig: e.tls, MaxIdleConnsPerHost: devices, MaxConnsPerHost: devices}
		defer tr.CloseIdleConnections()
		clients := make([]*http.Client, devices)
		for i := range clients {
			// One transport per device: one keep-alive connection each.
			clients[i] = &http.Client{Transport: tr.Clone(), Timeout: 30 * time.Second}
		}
		run(b, func(d int) error {
			req, _ := http.NewRequest("POST", e.base+devicePath(ids[d])+":publishEvent", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := clients[d].Do(req)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("publishEvent: %d", resp.StatusCode)
			}
			return nil
		})
	})
	b.Run("mqtt-qos1", func(b *testing.B) {
		conns := make([]*client, devices)
		for i := range conns {
			conns[i] = testutil.Must(e.dial(clientID(ids[i]), tok))
		}
		payload := []byte("temperature=21.5;humidity=40")
		run(b, func(d int) error {
			t := conns[d].Publish("/devices/"+ids[d]+"/events", 1, false, payload)
			if !t.WaitTimeout(30 * time.Second) {
				return fmt.Errorf("no PUBACK")
			}
			return t.Error()
		})
	})
}
