package bridge_test

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lesismal/nbio"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/passerelle-iot/passerelle/pkg/mqttwire"
)

// envEngineMemory asks TestEngineIdleMemory to run with that many
// connections per engine (for example PASSERELLE_ENGINE_MEMORY_N=9000:
// client and server sockets of one process must fit in the file limit).
const envEngineMemory = "PASSERELLE_ENGINE_MEMORY_N"

// TestEngineIdleMemory is the prototype measurement of issue 15 part 1:
// the memory of N idle MQTT connections (CONNECT answered by CONNACK,
// then silence) on three candidate connection layers, each with no
// bridge logic, so that only the layer's own cost is compared:
//
//   - mochi: mochi-mqtt/server v2 (what the bridge runs on), with an
//     allow-all hook;
//   - goroutine: one goroutine per connection that waits for the socket
//     to be readable without holding a buffer (syscall.RawConn.Read) and
//     takes a pooled buffer only for a packet;
//   - nbio: github.com/lesismal/nbio's epoll engine, no goroutine per
//     connection, read buffers shared by the poller.
//
// It reports the growth of the Go heap in use plus goroutine stacks,
// after garbage collection, divided by N (the client sockets of this
// process, about 0.3 KiB each, included). It runs only when asked:
//
//	PASSERELLE_ENGINE_MEMORY_N=9000 go test -run TestEngineIdleMemory -v ./services/bridge/
func TestEngineIdleMemory(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv(envEngineMemory))
	if n <= 0 {
		t.Skipf("set %s=N to measure the memory of N idle connections per engine", envEngineMemory)
	}
	for _, eng := range []struct {
		name  string
		serve func(t *testing.T, ln net.Listener) (stop func())
	}{
		{"mochi", serveMochi},
		{"goroutine", serveGoroutines},
		{"nbio", serveNbio},
	} {
		t.Run(eng.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			stop := eng.serve(t, ln)
			defer stop()
			// One connection first: the engine's fixed costs are not per connection.
			warm, err := rawConnect(ln.Addr().String(), "warm", "pw")
			if err != nil {
				t.Fatal(err)
			}
			defer warm.Close()
			before := settledMem()
			conns := make([]net.Conn, 0, n)
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			for i := range n {
				c, err := rawConnect(ln.Addr().String(), fmt.Sprintf("c%d", i), "pw")
				if err != nil {
					t.Fatalf("connection %d: %v", i, err)
				}
				conns = append(conns, c)
			}
			after := settledMem()
			heap := float64(int64(after.HeapInuse)-int64(before.HeapInuse)) / float64(n) / 1024
			stack := float64(int64(after.StackInuse)-int64(before.StackInuse)) / float64(n) / 1024
			t.Logf("%s: %d idle connections: %.2f KiB each (heap %.2f KiB, stacks %.2f KiB)", eng.name, n, heap+stack, heap, stack)
		})
	}
}

func serveMochi(t *testing.T, ln net.Listener) func() {
	// The bridge's settings (bridge.go): small buffers and queues.
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumClientWritesPending = 64
	caps.MaximumInflight = 64
	srv := mqtt.New(&mqtt.Options{
		Capabilities: caps, ClientNetWriteBufferSize: 1 << 10, ClientNetReadBufferSize: 1 << 10,
		Logger:                 slog.New(slog.NewTextHandler(io.Discard, nil)),
		SysTopicResendInterval: int64((365 * 24 * time.Hour) / time.Second),
	})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddListener(listeners.NewNet("mem", ln)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	return func() { _ = srv.Close() }
}

var packetBufs = sync.Pool{New: func() any { b := make([]byte, 4096); return &b }}

// serveGoroutines is the goroutine-per-connection candidate.
func serveGoroutines(t *testing.T, ln net.Listener) func() {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				rc, err := c.(*net.TCPConn).SyscallConn()
				if err != nil {
					return
				}
				var pending []byte // the bytes of a packet not yet whole
				for {
					// Wait for the socket to be readable, holding no buffer:
					// a 1-byte peek says whether bytes (or an error) wait.
					if err := rc.Read(func(fd uintptr) bool {
						var one [1]byte
						_, _, err := syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
						return !errors.Is(err, syscall.EAGAIN)
					}); err != nil {
						return
					}
					pb := packetBufs.Get().(*[]byte)
					k, err := c.Read(*pb)
					if err != nil {
						packetBufs.Put(pb)
						return
					}
					data := append(pending, (*pb)[:k]...)
					packetBufs.Put(pb)
					rest, ok := answer(data, c.Write)
					if !ok {
						return
					}
					pending = append([]byte(nil), rest...)
					if len(pending) == 0 {
						pending = nil
					}
				}
			}()
		}
	}()
	return func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range open {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
}

// serveNbio is the event-driven candidate.
func serveNbio(t *testing.T, ln net.Listener) func() {
	g := nbio.NewEngine(nbio.Config{NPoller: 1, ReadBufferSize: 4096})
	g.OnData(func(c *nbio.Conn, data []byte) {
		var pending []byte
		if s, ok := c.Session().([]byte); ok {
			pending = s
		}
		rest, ok := answer(append(pending, data...), c.Write)
		if !ok {
			_ = c.Close()
			return
		}
		if len(rest) > 0 {
			c.SetSession(append([]byte(nil), rest...))
		} else if pending != nil {
			c.SetSession(nil)
		}
	})
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if _, err := g.AddConn(c); err != nil {
				t.Errorf("nbio: %v", err)
				return
			}
		}
	}()
	return func() {
		_ = ln.Close()
		<-done
		g.Stop()
	}
}

// answer handles the whole packets in data (CONNECT gets CONNACK,
// PINGREQ PINGRESP) and returns the bytes of an incomplete one.
func answer(data []byte, write func([]byte) (int, error)) ([]byte, bool) {
	var out [8]byte
	for {
		h, _, n, err := mqttwire.Next(data, 1<<16)
		if err != nil {
			return nil, false
		}
		if n == 0 {
			return data, true
		}
		data = data[n:]
		var reply []byte
		switch h.Type {
		case mqttwire.Connect:
			reply = mqttwire.AppendConnack(out[:0], false, mqttwire.Accepted)
		case mqttwire.Pingreq:
			reply = mqttwire.AppendPingresp(out[:0])
		case mqttwire.Disconnect:
			return nil, false
		}
		if reply != nil {
			if _, err := write(reply); err != nil && !errors.Is(err, net.ErrClosed) {
				return nil, false
			}
		}
	}
}
