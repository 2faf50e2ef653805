// The floods come from 127.0.0.2-4, which Linux routes on lo (other
// systems give lo 127.0.0.1 only), and the file-limit test sets
// RLIMIT_NOFILE.

//go:build linux

package bridge_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/store"
	"github.com/passerelle-iot/passerelle/pkg/store/sqlstore"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/bridge"
)

// flooder holds silent TCP connections to addr from source, as a client
// that wants to exhaust the bridge would: each one the bridge closes is
// opened again (when reopen), after pause.
type flooder struct {
	closed  atomic.Int64 // connections the bridge closed
	dials   atomic.Int64 // connections opened
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	open    map[net.Conn]struct{}
	stopped bool
}

func flood(t testing.TB, addr, source string, n int, reopen bool, pause time.Duration) *flooder {
	t.Helper()
	f := &flooder{stop: make(chan struct{}), open: make(map[net.Conn]struct{})}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}, Timeout: 5 * time.Second}
	for range n {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			for {
				c, err := d.Dial("tcp", addr)
				if err == nil {
					f.dials.Add(1)
					if !f.track(c) {
						return
					}
					_, err = c.Read(make([]byte, 1)) // until the bridge (or stop) closes it
					f.untrack(c)
					select {
					case <-f.stop:
						return
					default:
					}
					f.closed.Add(1)
				}
				if !reopen {
					return
				}
				select {
				case <-f.stop:
					return
				case <-time.After(pause):
				}
			}
		}()
	}
	t.Cleanup(f.close)
	return f
}

func (f *flooder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		c.Close()
		return false
	}
	f.open[c] = struct{}{}
	return true
}

func (f *flooder) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.open, c)
	f.mu.Unlock()
	c.Close()
}

func (f *flooder) holding() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.open)
}

// close ends the flood and waits for its goroutines.
func (f *flooder) close() {
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		return
	}
	f.stopped = true
	close(f.stop)
	for c := range f.open {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// countingHandler counts the log records whose message contains a word.
type countingHandler struct {
	slog.Handler
	word string
	n    *atomic.Int64
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.word) {
		h.n.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return countingHandler{h.Handler.WithAttrs(as), h.word, h.n}
}

func (h countingHandler) WithGroup(g string) slog.Handler {
	return countingHandler{h.Handler.WithGroup(g), h.word, h.n}
}

// TestFloodFromOneAddress: silent sockets from 127.0.0.2 past the
// per-address limit are closed as soon as accepted (counted, and logged
// once, not once per socket), and a device from 127.0.0.1 connects and
// publishes, though the flood would fill the connection cap.
func TestFloodFromOneAddress(t *testing.T) {
	keys(t)
	var lines atomic.Int64
	log := slog.New(countingHandler{testutil.Logger(t).Handler(), "waiting to authenticate", &lines})
	reader := sdkmetric.NewManualReader()
	const maxConns, perAddr, n = 40, 8, 60
	e := newEnvLogged(t, log, nil,
		bridge.WithMaxConnections(maxConns), bridge.WithMaxPendingPerAddress(perAddr),
		bridge.WithConnectTimeout(time.Minute), // the flood stays for the whole test
		bridge.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
	e.createDevice("dev-1", ecKey, nil)

	f := flood(t, e.addr, "127.0.0.2", n, false, 0)
	testutil.WaitFor(t, 10*time.Second, func() error {
		if got := f.closed.Load(); got != n-perAddr {
			return fmt.Errorf("the bridge closed %d of %d silent sockets, want %d", got, n, n-perAddr)
		}
		return nil
	})

	c := e.connect("dev-1", ecKey)
	wait(t, c.Publish("/devices/dev-1/events", 1, false, []byte("still here")))
	if got := f.holding(); got != perAddr {
		t.Errorf("the flood holds %d sockets, want %d", got, perAddr)
	}
	if got := metricSums(t, reader)["passerelle.bridge.accepts.refused/max_pending_per_address"]; got != n-perAddr {
		t.Errorf("passerelle.bridge.accepts.refused/max_pending_per_address = %d, want %d", got, n-perAddr)
	}
	if got := lines.Load(); got != 1 {
		t.Errorf("%d log lines about the refusals, want 1", got)
	}
}

// TestFloodOfPendingConnections: past the pending cap, new connections are
// closed as soon as accepted, whatever their address, while authenticated
// devices keep working; once the silent sockets go, devices connect again.
func TestFloodOfPendingConnections(t *testing.T) {
	keys(t)
	const maxPending = 10
	e := newEnv(t, bridge.WithMaxPendingConnections(maxPending), bridge.WithMaxPendingPerAddress(0),
		bridge.WithConnectTimeout(time.Minute))
	e.createDevice("dev-1", ecKey, nil)
	e.createDevice("dev-2", ecKey, nil)
	c := e.connect("dev-1", ecKey)

	var floods []*flooder
	for _, src := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
		floods = append(floods, flood(t, e.addr, src, 10, false, 0))
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		held, closed := 0, int64(0)
		for _, f := range floods {
			held += f.holding()
			closed += f.closed.Load()
		}
		if held != maxPending || closed != 30-maxPending {
			return fmt.Errorf("the flood holds %d sockets and had %d closed, want %d and %d", held, closed, maxPending, 30-maxPending)
		}
		return nil
	})
	wait(t, c.Publish("/devices/dev-1/events", 1, false, []byte("unharmed")))
	for _, f := range floods {
		f.close()
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		c2, err := e.dial(clientID("dev-2"), ecKey.jwt(t))
		if err == nil {
			c2.Disconnect(0)
		}
		return err
	})
}

const floodChildEnv = "PASSERELLE_TEST_FLOOD_CHILD"

// TestFloodAtTheFileLimit is the flood of issue 8 made deterministic: a
// bridge with its default limits in a process limited to 1,024 open files
// (a re-executed test binary), and 1,100 silent sockets from 127.0.0.2,
// each opened again as soon as the bridge closes it. A device from
// 127.0.0.1 connects and publishes at once. (Without the pending limits
// the flood takes every file descriptor, Accept fails with EMFILE, and the
// device waits for the flood's sockets to time out.)
func TestFloodAtTheFileLimit(t *testing.T) {
	if os.Getenv(floodChildEnv) == "1" {
		floodChild(t)
		return
	}
	if testing.Short() {
		t.Skip("runs a bridge in a child process")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFloodAtTheFileLimit$", "-test.v")
	cmd.Env = append(os.Environ(), floodChildEnv+"=1")
	stdin := testutil.Must(cmd.StdinPipe())
	stdout := testutil.Must(cmd.StdoutPipe())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		stdin.Close() // the child's signal to stop
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("the child did not stop; its stderr:\n%s", stderr.String())
		}
	})
	ready := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "READY" {
				ready <- f[1:]
			}
		}
	}()
	var addr, password string
	select {
	case f := <-ready:
		addr, password = f[0], f[1]
	case err := <-exited:
		t.Fatalf("the child exited before it was ready: %v\n%s", err, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("the child was not ready after 30 s:\n%s", stderr.String())
	}

	const n = 1100
	f := flood(t, addr, "127.0.0.2", n, true, time.Millisecond)
	testutil.WaitFor(t, 20*time.Second, func() error {
		if d := f.dials.Load(); d < n {
			return fmt.Errorf("the flood opened %d connections", d)
		}
		return nil
	})

	o := paho.NewClientOptions().AddBroker("tcp://" + addr).
		SetClientID(clientID("dev-1")).SetUsername("unused").SetPassword(password).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second)
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("a device could not connect during the flood (holding %d sockets): %v", f.holding(), tok.Error())
	}
	defer c.Disconnect(0)
	wait(t, c.Publish("/devices/dev-1/events", 1, false, []byte("through the flood")))
	t.Logf("the flood opened %d connections, %d closed by the bridge", f.dials.Load(), f.closed.Load())
}

// floodChild is the child of TestFloodAtTheFileLimit: a bridge on plain
// MQTT in a process of 1,024 open files, until stdin closes.
func floodChild(t *testing.T) {
	lim := syscall.Rlimit{Cur: 1024, Max: 1024}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	keys(t)
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st := testutil.Must(sqlstore.Open(ctx, log, t.TempDir()+"/db.sqlite"))
	defer st.Close()
	b := testutil.Must(bus.Open(ctx, log, bus.Options{DataDir: t.TempDir()}))
	defer b.Close()
	if err := st.CreateRegistry(ctx, &store.Registry{
		Key: regKey, EventNotificationConfigs: []store.EventNotificationConfig{{PubsubTopicName: eventsTopic}},
	}); err != nil {
		t.Fatal(err)
	}
	testutil.Must(st.CreateDevice(ctx, &store.Device{Registry: regKey, ID: "dev-1", Credentials: []store.Credential{ecKey.cred}}, time.Now()))
	ln := testutil.Must(net.Listen("tcp", "127.0.0.1:0"))
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- bridge.New(log, st, b).Serve(sctx, ln) }()
	fmt.Printf("READY %s %s\n", ln.Addr(), ecKey.jwt(t))
	_, _ = bufio.NewReader(os.Stdin).ReadString(0) // until the parent closes stdin
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}
