// Package h2split splits a plaintext listener in two by each connection's
// first bytes: HTTP/2 with prior knowledge (gRPC without TLS starts with
// the HTTP/2 client preface) on one side, everything else (HTTP/1.1) on
// the other, so that gRPC's own server and a net/http server share a port.
package h2split

import (
	"bytes"
	"io"
	"net"
	"sync"
	"time"
)

// Listener is a listener split in two: H2 accepts the connections that
// start with the HTTP/2 client preface, HTTP1 the others. A connection that
// sends too few bytes within the timeout is closed.
type Listener struct {
	lis     net.Listener
	timeout time.Duration // for the first bytes
	h2      *chanListener
	http1   *chanListener
	wg      sync.WaitGroup // the accept loop and the connections being sniffed
}

// H2 is the half of the HTTP/2 connections.
func (s *Listener) H2() net.Listener { return s.h2 }

// HTTP1 is the half of the other connections.
func (s *Listener) HTTP1() net.Listener { return s.http1 }

// h2Preface is how the HTTP/2 client preface starts; no HTTP/1.1 method
// does.
var h2Preface = []byte("PRI * HTTP/2.0")

// New splits lis; timeout bounds how long a new connection has to send its
// first bytes. Close it to stop.
func New(lis net.Listener, timeout time.Duration) *Listener {
	done := make(chan struct{})
	var once sync.Once
	closeAll := func() { once.Do(func() { close(done) }) }
	s := &Listener{lis: lis, timeout: timeout}
	s.h2 = &chanListener{addr: lis.Addr(), conns: make(chan net.Conn), done: done, close: closeAll}
	s.http1 = &chanListener{addr: lis.Addr(), conns: make(chan net.Conn), done: done, close: closeAll}
	s.wg.Go(s.accept)
	return s
}

// accept runs until lis is closed.
func (s *Listener) accept() {
	var delay time.Duration
	for {
		c, err := s.lis.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() { // e.g. out of file descriptors for a moment
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(delay):
					continue
				case <-s.h2.done:
				}
			}
			s.h2.close()
			return
		}
		delay = 0
		s.wg.Go(func() { s.sniff(c) })
	}
}

// sniff reads a connection's first bytes (within the timeout, or it is
// closed) and hands it on.
func (s *Listener) sniff(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(s.timeout))
	head := make([]byte, len(h2Preface))
	n, err := io.ReadFull(c, head)
	if err != nil && !(n > 0 && !bytes.HasPrefix(h2Preface, head[:n])) {
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	to := s.http1
	if bytes.Equal(head[:n], h2Preface) {
		to = s.h2
	}
	pc := &peekedConn{Conn: c, head: head[:n]}
	select {
	case to.conns <- pc:
	case <-to.done:
		c.Close()
	}
}

// Close closes the listener and both halves, and waits for the
// connections being sniffed.
func (s *Listener) Close() error {
	err := s.lis.Close()
	s.h2.close()
	s.wg.Wait()
	return err
}

// chanListener is one half of a Listener; closing either closes both.
type chanListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	close func()
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error   { l.close(); return nil }
func (l *chanListener) Addr() net.Addr { return l.addr }

// peekedConn gives back the bytes sniffed before the rest.
type peekedConn struct {
	net.Conn
	head []byte
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if len(c.head) > 0 {
		n := copy(p, c.head)
		c.head = c.head[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
