package main

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/passerelle-iot/passerelle/pkg/cluster"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

func TestReplicaFlags(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		contains string
	}{
		{[]string{"--advertise-addr", "10.0.0.1:8090"}, "give --nats-url too"},
		{[]string{"--nats-url", "http://x:4222"}, "--nats-url"},
		{[]string{"--nats-url", "nats://127.0.0.1:4222", "--listen", "0.0.0.0:8090"}, "--advertise-addr is required"},
		{[]string{"--nats-url", "nats://127.0.0.1:4222", "--listen", ":8090"}, "--advertise-addr is required"},
		{[]string{"--nats-url", "nats://127.0.0.1:4222", "--advertise-addr", "0.0.0.0:8090"}, "no address to dial"},
		{[]string{"--nats-url", "nats://127.0.0.1:4222", "--advertise-addr", "hub-1:0"}, "--advertise-addr"},
		{[]string{"--nats-url", "nats://127.0.0.1:4222", "--peer-ca", "ca.pem"}, "--tls-cert"},
		{[]string{"--drain", "-1s"}, "--drain"},
	} {
		var out bytes.Buffer
		if code := run(t.Context(), append(tc.args, "--insecure-no-auth", "--check-config"), &out, noEnv); code != 2 {
			t.Errorf("%v: exit %d, want 2", tc.args, code)
		}
		oneLine(t, fmt.Sprint(tc.args), out.String(), tc.contains)
	}
	var out bytes.Buffer
	args := []string{"--nats-url", "nats://127.0.0.1:4222", "--listen", "0.0.0.0:8090", "--advertise-addr", "hub-1.internal:8090",
		"--drain", "30s", "--insecure-no-auth", "--check-config"}
	if code := run(t.Context(), args, &out, noEnv); code != 0 {
		t.Errorf("%v: exit %d: %s", args, code, out.String())
	}
}

// TestReplicasJoinAndLeave: two hubs on one NATS join the members (one
// with a drain), and leave when stopped.
func TestReplicasJoinAndLeave(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS did not start")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type hubRun struct {
		out  testutil.SyncBuffer
		done chan int
	}
	var hubs []*hubRun
	for i, extra := range [][]string{nil, {"--drain", "500ms"}} {
		h := &hubRun{done: make(chan int, 1)}
		args := append([]string{"--listen", testutil.FreeAddr(t), "--bridge", testutil.FreeAddr(t), "--bridge-plain", "--insecure-no-auth",
			"--data-dir", t.TempDir(), "--manager-url", "http://" + testutil.FreeAddr(t),
			"--nats-url", srv.ClientURL(), "--instance-id", fmt.Sprintf("hub-%d", i)}, extra...)
		go func() { h.done <- run(ctx, args, &h.out, noEnv) }()
		hubs = append(hubs, h)
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	members := func() ([]string, error) {
		ctx := t.Context()
		kv, err := js.KeyValue(ctx, cluster.MembersBucket)
		if err != nil {
			return nil, err
		}
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			return nil, err
		}
		var out []string
		for k := range keys.Keys() {
			out = append(out, k)
		}
		slices.Sort(out)
		return out, nil
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, err := members()
		if err == nil && slices.Equal(got, []string{"hub-0", "hub-1"}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("members %v (%v)\n%s\n%s", got, err, hubs[0].out.String(), hubs[1].out.String())
		}
		time.Sleep(20 * time.Millisecond) // polling for start-up
	}
	cancel()
	for i, h := range hubs {
		select {
		case code := <-h.done:
			if code != 0 {
				t.Errorf("hub-%d: exit %d\n%s", i, code, h.out.String())
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("hub-%d did not stop", i)
		}
	}
	if got, err := members(); err != nil || len(got) != 0 {
		t.Errorf("members after the stop: %v, %v", got, err)
	}
}
