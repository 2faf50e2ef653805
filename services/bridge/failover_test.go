package bridge_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/pkg/testutil/natstest"
	"github.com/passerelle-iot/passerelle/services/bridge"
)

// TestPipelinedQoS1AcrossAStreamLeaderElection: on a three-server NATS
// cluster, the server holding the stream's leader stops while a device
// sends pipelined QoS 1 events. The bridge sends the events the stream did
// not answer again until a new leader takes them: the device's connection
// stays up, every PUBLISH gets its PUBACK in order, the events go on being
// acknowledged after the election, and each acknowledged event is in the
// stream exactly once (the copies share a message id). Once with the
// bridge connected to the stopped server (it also reconnects to another),
// once connected elsewhere.
func TestPipelinedQoS1AcrossAStreamLeaderElection(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-server NATS cluster")
	}
	for _, onLeader := range []bool{true, false} {
		name := "bridge on another server"
		if onLeader {
			name = "bridge on the leader's server"
		}
		t.Run(name, func(t *testing.T) { failover(t, onLeader) })
	}
}

func failover(t *testing.T, bridgeOnLeader bool) {
	keys(t)
	servers := natstest.Cluster(t, 3)
	ce := newClusterEnvOn(t, natstest.URLs(servers...), 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	js := testutil.Must(jetstream.New(ce.mgr.Conn()))
	stream := testutil.Must(js.Stream(ctx, ce.mgr.StreamName()))
	leaderName := stream.CachedInfo().Cluster.Leader
	var leader *server.Server
	var others []*server.Server
	for _, s := range servers {
		if s.Name() == leaderName {
			leader = s
		} else {
			others = append(others, s)
		}
	}
	if leader == nil {
		t.Fatalf("no server is the stream leader %q", leaderName)
	}
	url := natstest.URLs(others...)
	if bridgeOnLeader {
		url = leader.ClientURL() // the others are learnt from it
	}
	a := ce.addBridge("a", url, bridge.WithMessageRate(0, 0), bridge.WithByteRate(0), bridge.WithEventsInFlight(8))
	testutil.WaitFor(t, 10*time.Second, func() error {
		if n := len(a.bus.Conn().Servers()); n < 3 {
			return fmt.Errorf("the bridge knows %d servers of 3", n)
		}
		return nil
	})
	a.createDevice("failover", ecKey, nil)

	tcp, err := net.DialTimeout("tcp", a.addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cfg := a.tls.Clone()
	cfg.ServerName = "127.0.0.1"
	conn, err := rawHandshake(tls.Client(tcp, cfg), clientID("failover"), ecKey.jwt(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// The device writes PUBLISHes without waiting, at most 400 ahead of
	// its PUBACKs, until stopped; packet ids 1, 2, ... (never wrapping:
	// at most maxEvents).
	const maxEvents = 60000
	credit := make(chan struct{}, 400)
	stop := make(chan struct{})
	var written atomic.Int64
	werr := make(chan error, 1)
	go func() {
		var out []byte
		for pid := 1; pid <= maxEvents; {
			out = out[:0]
			first := pid
			for ; pid < first+20 && pid <= maxEvents; pid++ {
				select {
				case credit <- struct{}{}:
				case <-stop:
					werr <- nil
					return
				}
				out = appendPublishQoS1(out, uint16(pid), "/devices/failover/events", fmt.Sprintf("event-%d", pid))
			}
			if _, err := conn.Write(out); err != nil {
				werr <- err
				return
			}
			written.Store(int64(pid - 1))
		}
		werr <- nil
	}()

	// PUBACKs, in the order of the PUBLISHes.
	r := bufio.NewReader(conn)
	acked := 0
	var lastAck time.Time
	var longestGap time.Duration
	readAcks := func(until int) {
		t.Helper()
		for acked < until {
			_ = conn.SetReadDeadline(time.Now().Add(time.Minute))
			var a [4]byte
			if _, err := io.ReadFull(r, a[:]); err != nil {
				t.Fatalf("after %d PUBACKs: the device's connection: %v", acked, err)
			}
			pid := uint16(acked + 1)
			if a[0] != 0x40 || a[1] != 2 || uint16(a[2])<<8|uint16(a[3]) != pid {
				t.Fatalf("PUBACK %d is % x, want 40 02 for packet id %d", acked+1, a, pid)
			}
			acked++
			<-credit
			now := time.Now()
			if !lastAck.IsZero() && now.Sub(lastAck) > longestGap {
				longestGap = now.Sub(lastAck)
			}
			lastAck = now
		}
	}
	readAcks(200)

	killed := make(chan struct{})
	stopped := time.Now()
	go func() {
		defer close(killed)
		leader.Shutdown()
	}()
	for {
		readAcks(acked + 1)
		select {
		case <-killed:
		default:
			continue
		}
		break
	}
	atKill := acked
	// Acknowledged again after the election: more events than were in
	// flight or buffered at the kill.
	readAcks(atKill + 300)
	resumed := time.Since(stopped)
	close(stop)
	if err := <-werr; err != nil {
		t.Fatalf("writing PUBLISHes: %v", err)
	}
	total := int(written.Load())
	readAcks(total)
	t.Logf("%d events PUBACKed in order (%d when the leader's server had stopped, %d more %s after it stopped); longest wait between two PUBACKs %s",
		total, atKill, acked-atKill, resumed.Round(time.Millisecond), longestGap.Round(time.Millisecond))

	// Still the same connection: a PINGREQ gets its PINGRESP.
	if _, err := conn.Write([]byte{0xC0, 0}); err != nil {
		t.Fatalf("PINGREQ: %v", err)
	}
	var pong [2]byte
	if _, err := io.ReadFull(r, pong[:]); err != nil || pong != [2]byte{0xD0, 0} {
		t.Fatalf("PINGRESP % x, %v", pong, err)
	}

	// A new leader, and every event in the stream exactly once (read
	// through a connection to the servers left).
	rjs := testutil.Must(jetstream.New(ce.openBusAt("reader", natstest.URLs(others...)).Conn()))
	subj := testutil.Must(bus.TopicSubject(eventsTopic))
	testutil.WaitFor(t, 30*time.Second, func() error {
		st, err := rjs.Stream(ctx, ce.mgr.StreamName())
		if err != nil {
			return err
		}
		info := st.CachedInfo()
		if info.Cluster.Leader == leaderName || info.Cluster.Leader == "" {
			return fmt.Errorf("stream leader %q after %s stopped", info.Cluster.Leader, leaderName)
		}
		oc, err := rjs.OrderedConsumer(ctx, ce.mgr.StreamName(), jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}})
		if err != nil {
			return err
		}
		seen := make(map[string]int, total)
		for got := uint64(0); got < info.State.Msgs; {
			batch, err := oc.Fetch(int(min(info.State.Msgs-got, 1000)), jetstream.FetchMaxWait(10*time.Second))
			if err != nil {
				return err
			}
			n := 0
			for m := range batch.Messages() {
				seen[string(m.Data())]++
				n++
			}
			if n == 0 {
				return fmt.Errorf("after %d stored messages of %d: %v", got, info.State.Msgs, batch.Error())
			}
			got += uint64(n)
		}
		for i := 1; i <= total; i++ {
			if n := seen[fmt.Sprintf("event-%d", i)]; n != 1 {
				t.Errorf("event-%d is %d times in the stream, want once", i, n)
			}
		}
		if int(info.State.Msgs) != total {
			t.Errorf("the stream holds %d messages for %d events", info.State.Msgs, total)
		}
		return nil
	})
}
