package bridge

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
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
	wg     sync.WaitGroup // the connection handlers
	served chan struct{}  // closed when serve returns
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
		go func() {
			defer l.wg.Done()
			if err := handle(tc); err != nil {
				l.log.Debug("bridge: connection ended", "remote", tc.RemoteAddr().String(), "err", err)
			}
			_ = tc.Close()
			l.mu.Lock()
			delete(l.conns, tc)
			l.mu.Unlock()
		}()
	}
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
}

// trackedConn releases its admission slots once each: the pending one when
// it authenticates or closes, the connection one when it closes.
type trackedConn struct {
	net.Conn
	adm          *admission
	src          addrKey
	pending      atomic.Bool
	once         sync.Once
	writeTimeout time.Duration
	log          *slog.Logger
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.endPending()
	c.once.Do(c.adm.closed)
	return err
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

// SetDeadline sets the read deadline only: the connection calls it for
// its keep-alive, which is about reads; writes keep their own bound.
// (Without a write timeout, writes are bounded by the keep-alive.)
func (c *trackedConn) SetDeadline(t time.Time) error {
	if c.writeTimeout <= 0 {
		return c.Conn.SetDeadline(t)
	}
	return c.Conn.SetReadDeadline(t)
}
