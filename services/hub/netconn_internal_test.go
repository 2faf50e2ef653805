package hub

import (
	"io"
	"net"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// TestCloseWaitsForTheBridge: closing a gateway connection returns only
// once the other end has seen it end and closed its own, even when that
// end takes its time.
func TestCloseWaitsForTheBridge(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	var serverClosed atomic.Bool
	go func() {
		c, err := lis.Accept()
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, c) // until the client's end
		time.Sleep(100 * time.Millisecond)
		serverClosed.Store(true)
		c.Close()
	}()
	o := paho.NewClientOptions()
	o.ConnectTimeout = 5 * time.Second
	c, err := openConn(&url.URL{Scheme: "tcp", Host: lis.Addr().String()}, *o)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if !serverClosed.Load() {
		t.Fatal("Close returned before the other end closed")
	}
	if err := c.Close(); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
}
