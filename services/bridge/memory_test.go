package bridge_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/store"
	"github.com/passerelle-iot/passerelle/pkg/store/sqlstore"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/bridge"
)

// envIdleMemory asks TestIdleMemory to run, with that many connections
// (for example PASSERELLE_IDLE_MEMORY_N=5000). It is off by default: it
// takes seconds and its figure means nothing under -race.
const envIdleMemory = "PASSERELLE_IDLE_MEMORY_N"

// maxIdleBytesPerConn bounds the figure TestIdleMemory reports, client
// side included, as a guard against regressions: with idle connections
// parked (no goroutine; 2 cores, Go 1.26, Linux) an idle plain connection
// measured about 3.8 KiB (the bridge's state and both sockets), a TLS
// one about 19 KiB, half of it the client's own tls.Conn in this process.
// With a goroutine each it was 8.2 KiB plain; on mochi, 33.5 KiB.
var maxIdleBytesPerConn = map[string]float64{"plain": 5 << 10, "TLS": 22 << 10}

// TestIdleMemory connects N authenticated devices over plain TCP, or TLS
// with PASSERELLE_IDLE_MEMORY_TLS=1 (real
// JWTs, a raw client that writes CONNECT, reads CONNACK and then stays
// silent, so the client side costs one socket each) and reports the
// bridge's memory per idle connection: the growth of the Go heap in use
// plus goroutine stacks, after garbage collection, divided by N. The
// figure includes the client sockets of this same process (about 0.3 KiB
// each), so it slightly overstates the bridge's cost.
//
//	PASSERELLE_IDLE_MEMORY_N=5000 go test -run TestIdleMemory -v ./services/bridge/
func TestIdleMemory(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv(envIdleMemory))
	if n <= 0 {
		t.Skipf("set %s=N to measure the memory of N idle connections", envIdleMemory)
	}
	keys(t)
	if os.Getenv("PASSERELLE_IDLE_MEMORY_PROFILE") != "" {
		// Record every allocation, so the profile accounts for each byte.
		runtime.MemProfileRate = 1
	}
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil)) // quiet even with -v
	st := testutil.Must(sqlstore.Open(ctx, log, t.TempDir()+"/db.sqlite"))
	t.Cleanup(func() { _ = st.Close() })
	testutil.Must(0, st.CreateRegistry(ctx, &store.Registry{Key: regKey}))
	for i := range n {
		testutil.Must(st.CreateDevice(ctx, &store.Device{Registry: regKey, ID: fmt.Sprintf("idle-%d", i),
			Credentials: []store.Credential{ecKey.cred}}, time.Now()))
	}
	token := ecKey.jwt(t) // the same key signs for every device
	ln := testutil.Must(net.Listen("tcp", "127.0.0.1:0"))
	dial := func(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, 10*time.Second) }
	mode := "plain"
	if os.Getenv("PASSERELLE_IDLE_MEMORY_TLS") != "" {
		mode = "TLS"
		serverTLS, clientTLS := testTLS(t)
		ln = tls.NewListener(ln, serverTLS)
		dial = func(addr string) (net.Conn, error) {
			d := &net.Dialer{Timeout: 10 * time.Second}
			return tls.DialWithDialer(d, "tcp", addr, clientTLS)
		}
	}
	connect := func(id string) (net.Conn, error) {
		c, err := dial(ln.Addr().String())
		if err != nil {
			return nil, err
		}
		return rawHandshake(c, id, token)
	}
	// Every connection may be waiting to authenticate at once: the
	// default pending cap, a quarter of the connection cap, would refuse
	// some of the 32 handshakes in flight when n is small.
	br := bridge.New(log, st, nil, bridge.WithMaxConnections(n+10), bridge.WithMaxPendingConnections(n+10))
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- br.Serve(sctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })

	// Warm up (one connection, closed) so that lazily built shared state
	// is not counted per connection.
	c0, err := connect(clientID("idle-0"))
	if err != nil {
		t.Fatal(err)
	}
	_ = c0.Close()
	testutil.WaitFor(t, 5*time.Second, func() error {
		if got := br.Connections(); got != 0 {
			return fmt.Errorf("%d connections", got)
		}
		return nil
	})
	before := settledMem()

	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 32)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := connect(clientID(fmt.Sprintf("idle-%d", i)))
			if err != nil {
				errs <- err
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	if got := br.Connections(); got != n {
		t.Fatalf("bridge holds %d connections, want %d", got, n)
	}
	if runtime.GOOS == "linux" {
		// Silent devices are parked: no goroutine each.
		testutil.WaitFor(t, 30*time.Second, func() error {
			if got := br.Parked(); got != n {
				return fmt.Errorf("%d of %d connections parked", got, n)
			}
			return nil
		})
	}
	after := settledMem()
	if path := os.Getenv("PASSERELLE_IDLE_MEMORY_PROFILE"); path != "" {
		f := testutil.Must(os.Create(path))
		testutil.Must(0, pprof.WriteHeapProfile(f))
		testutil.Must(0, f.Close())
	}
	heap := float64(int64(after.HeapInuse)-int64(before.HeapInuse)) / float64(n)
	stack := float64(int64(after.StackInuse)-int64(before.StackInuse)) / float64(n)
	per := heap + stack
	t.Logf("%d idle %s connections: %.0f B each (heap %.0f B + stacks %.0f B); goroutines %d",
		n, mode, per, heap, stack, runtime.NumGoroutine())
	limit := maxIdleBytesPerConn[mode]
	if runtime.GOOS != "linux" {
		limit += 8 << 10 // a goroutine each: nothing parks them
	}
	if per > limit {
		t.Errorf("%.1f KiB per idle %s connection, want at most %.0f KiB", per/1024, mode, limit/1024)
	}
}

// settledMem collects garbage until goroutine stacks stop shrinking (the
// collector halves an underused stack at most once per cycle).
func settledMem() runtime.MemStats {
	var m runtime.MemStats
	for range 20 {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	return m
}

// rawConnect dials plain TCP, sends an MQTT 3.1.1 CONNECT and waits for a
// CONNACK 0.
func rawConnect(addr, clientID, password string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	return rawHandshake(c, clientID, password)
}

// rawHandshake sends an MQTT 3.1.1 CONNECT on c and waits for a CONNACK 0;
// it closes c on failure.
func rawHandshake(c net.Conn, clientID, password string) (net.Conn, error) {
	// Level 4; user name, password, clean session.
	pkt := connectPacket{level: 4, flags: 0xC2, clientID: clientID, user: ptr("unused"), password: &password}.encode()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(pkt); err != nil {
		c.Close()
		return nil, err
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil {
		c.Close()
		return nil, fmt.Errorf("reading CONNACK: %w", err)
	}
	if ack[0] != 0x20 || ack[3] != 0 {
		c.Close()
		return nil, fmt.Errorf("CONNACK % x", ack)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}
