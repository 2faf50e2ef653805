package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// runNATSMQTT is the durable peer of the comparison: nats-server, at the
// version of go.mod, with JetStream (file storage in dir) and its MQTT
// listener on addr, TLS when cert and key are given. MQTT QoS 1 messages
// in nats-server go through JetStream, as Passerelle's do, so it is the
// fair "every message on disk" peer; Mosquitto stores nothing. Anyone may
// connect (no authentication), like the Mosquitto of the comparison. It
// serves until ctx ends (SIGTERM), printing "ready" on stdout once the
// listener accepts.
func runNATSMQTT(ctx context.Context, stdout io.Writer, addr, dir, cert, key string) error {
	if dir == "" {
		return errors.New("nats-mqtt needs --store DIR for JetStream's files")
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--mqtt %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 {
		return fmt.Errorf("--mqtt %q: give a fixed port", addr)
	}
	opts := &server.Options{
		ServerName: "passerelle-bench-peer",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		NoLog:      os.Getenv("BENCH_NATS_LOG") == "",
		MaxConn:    1 << 20, // no cap of its own: the file limit is the cap, as for the others
	}
	opts.MQTT.Host = host
	opts.MQTT.Port = port
	if cert != "" || key != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return fmt.Errorf("nats-mqtt TLS: %w", err)
		}
		opts.MQTT.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
		opts.MQTT.TLSTimeout = 30
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("configuring nats-server: %w", err)
	}
	if !opts.NoLog {
		srv.ConfigureLogger()
	}
	srv.Start() // returns once the listeners run; Shutdown below ends them
	defer func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	}()
	if !srv.ReadyForConnections(30 * time.Second) {
		return errors.New("nats-server did not become ready in 30 s")
	}
	// The MQTT listener starts after the client one: wait until it accepts.
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nats-server's MQTT listener on %s: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond) // polling for the listener
	}
	fmt.Fprintf(stdout, "ready nats-server %s mqtt=%s pid=%d\n", server.VERSION, addr, os.Getpid())
	<-ctx.Done()
	return nil
}
