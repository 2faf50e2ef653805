package bridge_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/bridge"
)

// A connection flooding past 100 messages per second is closed with
// RESOURCE_EXHAUSTED; another connection, publishing meanwhile, is
// unharmed.
func TestMessageRateFloodClosesOnlyTheFlooder(t *testing.T) {
	keys(t)
	e := newEnv(t)
	e.createDevice("flooder", ecKey, nil)
	e.createDevice("calm", ecKey, nil)
	flooder := e.connect("flooder", ecKey)
	calm := e.connect("calm", ecKey)

	// The flooder sends QoS 0 events at 500 per second until it is cut
	// off (at most 5 s).
	floodDone := make(chan int, 1)
	go func() {
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		sent := 0
		deadline := time.After(5 * time.Second)
		for {
			select {
			case <-flooder.lost:
				floodDone <- sent
				return
			case <-deadline:
				floodDone <- -1
				return
			case <-tick.C:
				flooder.Publish("/devices/flooder/events", 0, false, []byte("flood"))
				sent++
			}
		}
	}()
	// The calm device publishes QoS 1 events (each PUBACKed) during and
	// after the flood, well under its own limit.
	for i := range 20 {
		wait(t, calm.Publish("/devices/calm/events", 1, false, []byte(fmt.Sprint("calm ", i))))
		time.Sleep(20 * time.Millisecond) // pacing the calm device at ~40 msg/s
	}
	sent := <-floodDone
	if sent < 0 {
		t.Fatal("the flooder was not disconnected within 5 s")
	}
	if sent > 400 {
		t.Errorf("the flooder sent %d messages before being closed; want about 125 (burst 100, then 100/s)", sent)
	}
	wait(t, calm.Publish("/devices/calm/events", 1, false, []byte("after")))
	if !calm.IsConnectionOpen() {
		t.Fatal("the calm device lost its connection")
	}
	testutil.WaitFor(t, 5*time.Second, func() error {
		d := e.device("flooder")
		if d.LastErrorStatus == nil || d.LastErrorStatus.Code != 8 || !strings.Contains(d.LastErrorStatus.Message, "100 messages per second") {
			return fmt.Errorf("flooder lastErrorStatus %+v, want RESOURCE_EXHAUSTED", d.LastErrorStatus)
		}
		if d := e.device("calm"); d.LastErrorStatus != nil {
			return fmt.Errorf("calm lastErrorStatus %+v", d.LastErrorStatus)
		}
		return nil
	})
}

// WithMessageRate raises the limit (the load test's knob).
func TestMessageRateOption(t *testing.T) {
	keys(t)
	e := newEnv(t, bridge.WithMessageRate(0, 0)) // no limit
	e.createDevice("fast", ecKey, nil)
	c := e.connect("fast", ecKey)
	for range 300 {
		c.Publish("/devices/fast/events", 0, false, []byte("x"))
	}
	wait(t, c.Publish("/devices/fast/events", 1, false, []byte("last")))
	if !c.IsConnectionOpen() {
		t.Fatal("closed without a message limit")
	}
}

// The byte rate: incoming past it closes a direct device; outgoing past
// it refuses a command.
func TestByteRate(t *testing.T) {
	keys(t)
	// 1 KB/s: the burst is then the largest event (256 KB + topic).
	e := newEnv(t, bridge.WithByteRate(1000))
	ctx := context.Background()
	dev := e.createDevice("big", ecKey, nil)
	c := e.connect("big", ecKey)

	cmds := newReceived()
	wait(t, c.Subscribe("/devices/big/commands/#", 1, cmds.handler))
	big := bytes.Repeat([]byte("c"), 200<<10)
	if err := e.bus.SendCommand(ctx, dev.NumID, bus.Command{Data: big}); err != nil {
		t.Fatalf("first command: %v", err)
	}
	cmds.next(t)
	err := e.bus.SendCommand(ctx, dev.NumID, bus.Command{Data: big})
	if !errors.Is(err, bus.ErrCommandFailed) || !strings.Contains(err.Error(), "bytes per second") {
		t.Fatalf("second command: %v, want the outgoing byte limit", err)
	}

	payload := bytes.Repeat([]byte("e"), 200<<10)
	wait(t, c.Publish("/devices/big/events", 1, false, payload))
	c.Publish("/devices/big/events", 1, false, payload) // no PUBACK: closed
	lostWithin(t, c, 10*time.Second)
	testutil.WaitFor(t, 5*time.Second, func() error {
		d := e.device("big")
		if d.LastErrorStatus == nil || d.LastErrorStatus.Code != 8 || !strings.Contains(d.LastErrorStatus.Message, "bytes per second") {
			return fmt.Errorf("lastErrorStatus %+v, want RESOURCE_EXHAUSTED", d.LastErrorStatus)
		}
		return nil
	})
}
