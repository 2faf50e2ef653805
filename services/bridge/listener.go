package bridge

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// listener accepts the connections of one net.Listener. It retries
// Accept errors with backoff (EMFILE must not stop a bridge for good),
// admits connections within the limits of admission (connections held,
// and waiting to authenticate, in all and per address), bounds the time
// to CONNECT, and runs each connection on a goroutine of its own.
type listener struct {
	id   string
	ln   net.Listener
	log  *slog.Logger
	adm  *admission // shared by every listener of a Bridge
	opts *options

	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
	wg     sync.WaitGroup // the connections, from accept to their handler's end
	served chan struct{}  // closed when serve returns

	handle      func(*trackedConn) error // serve's; errParked when it parked the connection
	parker      *parker                  // nil: idle connections keep their goroutine
	parkedCount func(delta int64)        // the Bridge's count of parked connections
}

func newListener(id string, ln net.Listener, log *slog.Logger, adm *admission, o *options) *listener {
	return &listener{
		id: id, ln: ln, log: log, adm: adm, opts: o,
		conns: make(map[*trackedConn]struct{}), served: make(chan struct{}),
	}
}

// Address is the listening address.
func (l *listener) Address() string { return l.ln.Addr().String() }

// serve accepts until close, and runs handle for each connection
// admitted, closing it once handle returns. Temporary errors (EMFILE,
// ECONNABORTED...) are retried after a backoff that doubles up to
// acceptBackoffMax.
func (l *listener) serve(handle func(*trackedConn) error) {
	defer close(l.served)
	l.handle = handle
	if l.opts.parkAfter > 0 {
		p, err := newParker(func(tc *trackedConn) { go l.run(tc) }, l.parkedCount)
		if err != nil {
			l.log.Warn("bridge: idle connections keep a goroutine each: cannot watch them with epoll", "listener", l.id, "err", err)
		}
		l.parker = p
	}
	var backoff time.Duration
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			if l.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), l.opts.acceptBackoffMax)
			l.log.Warn("bridge: accept failed, retrying", "listener", l.id, "err", err, "backoff", backoff)
			t := time.NewTimer(backoff)
			<-t.C
			continue
		}
		backoff = 0
		src := sourceOf(nc.RemoteAddr())
		if why, ok := l.adm.admit(src); !ok {
			_ = nc.Close()
			l.adm.refused(why, src, l.id)
			continue
		}
		tc := &trackedConn{Conn: nc, adm: l.adm, src: src, writeTimeout: l.opts.writeTimeout, log: l.log}
		tc.rd.nc = tc
		if l.parker != nil {
			tc.parker, tc.raw = l.parker, rawConnOf(nc)
			_, socket := nc.(syscall.Conn) // not a tls.Conn
			tc.plain = socket && tc.raw != nil
		}
		tc.pending.Store(true)
		// The TLS handshake and the CONNECT, reads and writes, within
		// the connect timeout; the connection sets its keep-alive
		// deadline once connected.
		_ = nc.SetDeadline(time.Now().Add(l.opts.connectTimeout))
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			_ = tc.Close()
			return
		}
		l.conns[tc] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.run(tc)
	}
}

// run runs the handler of tc, from its accept or from the parker, and
// closes tc once the handler returns, unless it parked tc.
func (l *listener) run(tc *trackedConn) {
	err := l.handle(tc)
	if errors.Is(err, errParked) {
		return // tc is the parker's, or already another goroutine's
	}
	if err != nil {
		l.log.Debug("bridge: connection ended", "remote", tc.RemoteAddr().String(), "err", err)
	}
	_ = tc.Close()
	l.mu.Lock()
	delete(l.conns, tc)
	l.mu.Unlock()
	l.wg.Done()
}

func (l *listener) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// close stops accepting and closes every connection.
func (l *listener) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	_ = l.ln.Close()
	for tc := range l.conns {
		_ = tc.Close()
	}
}

// stopAccepting closes the listening socket, and the connections not yet
// authenticated, for a drain: the authenticated ones stay until shed.
func (l *listener) stopAccepting() {
	_ = l.ln.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	for tc := range l.conns {
		if tc.pending.Load() {
			_ = tc.Close()
		}
	}
}

// wait returns once the accept loop and every connection handler ended.
// Only valid after Serve was started.
func (l *listener) wait() {
	<-l.served
	l.wg.Wait()
	if l.parker != nil {
		l.parker.close()
	}
}

// trackedConn releases its admission slots once each: the pending one when
// it authenticates or closes, the connection one when it closes.
//
// It also carries what its connection needs from one goroutine to the
// next across parking: the packet reader and the connection.
type trackedConn struct {
	net.Conn
	adm          *admission
	src          addrKey
	pending      atomic.Bool
	once         sync.Once
	writeTimeout time.Duration
	log          *slog.Logger

	rd      pktReader       // the connection's reads; its handler's only
	c       *conn           // set once authenticated; its handler's only
	parker  *parker         // nil: never parked
	raw     syscall.RawConn // the socket the parker watches; nil: none
	parkTok uint64          // its token in the parker's epoll set; 0: none yet
	plain   bool            // Conn is the socket itself (no TLS), and parked when silent
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	if c.parker != nil {
		c.parker.unpark(c) // a parked connection's handler sees the close
	}
	c.endPending()
	c.once.Do(c.adm.closed)
	return err
}

// rawConnOf returns the socket under nc, a TCP connection or TLS over
// one; nil for anything else (a pipe in a test).
func rawConnOf(nc net.Conn) syscall.RawConn {
	if t, ok := nc.(interface{ NetConn() net.Conn }); ok {
		nc = t.NetConn()
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// endPending ends the connection's pending time, once: at authentication, or at close.
func (c *trackedConn) endPending() {
	if c.pending.CompareAndSwap(true, false) {
		c.adm.endPending(c.src)
	}
}

// Write bounds every write: a client that stops reading would otherwise
// block, for ever, whoever writes to it (a config delivery, a command, a
// PUBACK) once its socket buffers are full. Past writeTimeout the
// connection is closed.
//
// The deadline is cleared after the write: TLS also writes from inside
// Read (a TLS 1.3 key update's reply), and must not meet an expired one.
func (c *trackedConn) Write(p []byte) (int, error) {
	if c.writeTimeout <= 0 {
		return c.Conn.Write(p)
	}
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	n, err := c.Conn.Write(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		c.log.Info("bridge: closing a connection that stopped reading", "remote", c.RemoteAddr().String(), "write_timeout", c.writeTimeout)
		_ = c.Close()
		return n, err
	}
	_ = c.Conn.SetWriteDeadline(time.Time{})
	return n, err
}

// keepAliveDeadline sets the read deadline of a connection, and the
// deadline of writes when there is no write timeout: the keep-alive's
// expiry, which the read deadline may precede to park the connection.
func (c *trackedConn) keepAliveDeadline(read, expiry time.Time) {
	_ = c.Conn.SetReadDeadline(read)
	if c.writeTimeout <= 0 {
		_ = c.Conn.SetWriteDeadline(expiry)
	}
}
