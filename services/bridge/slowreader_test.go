package bridge_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/bridge"
)

// TestSlowReaderIsDisconnected: a device that stops reading, its socket
// buffers full, is disconnected once a write to it has waited for the
// write timeout; meanwhile another device's commands go through, and the
// bridge still shuts down (the env's cleanup waits for it).
func TestSlowReaderIsDisconnected(t *testing.T) {
	keys(t)
	e := newEnv(t, bridge.WithWriteTimeout(300*time.Millisecond), bridge.WithByteRate(0))
	ctx := context.Background()
	slow := e.createDevice("slow-reader", ecKey, nil)
	fast := e.createDevice("fast-reader", ecKey, nil)

	// The slow device: a raw client with a small receive buffer that
	// subscribes to its commands, then never reads again.
	tcp, err := net.DialTimeout("tcp", e.addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = tcp.(*net.TCPConn).SetReadBuffer(4 << 10)
	cfg := e.tls.Clone()
	cfg.ServerName = "127.0.0.1"
	conn, err := rawHandshake(tls.Client(tcp, cfg), clientID("slow-reader"), ecKey.jwt(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	topic := "/devices/slow-reader/commands/#"
	sub := append([]byte{0x82, byte(2 + 2 + len(topic) + 1), 0, 1, 0, byte(len(topic))}, topic...)
	sub = append(sub, 0) // QoS 0
	if _, err := conn.Write(sub); err != nil {
		t.Fatal(err)
	}
	suback := make([]byte, 5)
	if _, err := io.ReadFull(conn, suback); err != nil || suback[0] != 0x90 {
		t.Fatalf("SUBACK % x: %v", suback, err)
	}

	// Commands to it fill its buffers, until one cannot be written.
	big := bytes.Repeat([]byte("x"), 100<<10)
	start := time.Now()
	var sendErr error
	for i := 0; i < 200 && sendErr == nil; i++ {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		sendErr = e.bus.SendCommand(cctx, slow.NumID, bus.Command{Data: big})
		cancel()
	}
	if sendErr == nil {
		t.Fatal("200 commands of 100 KB written to a device that reads nothing")
	}
	if errors.Is(sendErr, context.DeadlineExceeded) {
		t.Fatalf("the command waited for the sender's deadline (%v): the write to the slow device was not bounded", sendErr)
	}
	t.Logf("the write blocked after %v: %v", time.Since(start).Round(time.Millisecond), sendErr)
	testutil.WaitFor(t, 5*time.Second, func() error {
		if err := e.bus.SendCommand(ctx, slow.NumID, bus.Command{Data: []byte("x")}); !errors.Is(err, bus.ErrNotConnected) {
			return errors.New("the slow device is still connected")
		}
		return nil
	})

	// Another device is served as usual.
	c := e.connect("fast-reader", ecKey)
	cmds := newReceived()
	wait(t, c.Subscribe("/devices/fast-reader/commands/#", 1, cmds.handler))
	if err := e.bus.SendCommand(ctx, fast.NumID, bus.Command{Data: []byte("ping")}); err != nil {
		t.Fatal(err)
	}
	if m := cmds.next(t); string(m.Payload()) != "ping" {
		t.Fatalf("fast device got %q", m.Payload())
	}
}
