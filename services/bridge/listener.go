package bridge

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// listener adapts a net.Listener to mochi's listeners.Listener. It exists
// because mochi's own TCP listener stops accepting for good after one
// Accept error (design.md, "Facts measured"): this one retries with
// backoff, admits connections within the limits of admission (connections
// held, and waiting to authenticate, in all and per address), and bounds
// the time to CONNECT.
type listener struct {
	id     string
	ln     net.Listener
	log    *slog.Logger
	adm    *admission // shared by every listener of a Bridge
	opts   *options
	onDone func(net.Conn) // called once the connection's handler returned

	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
	wg     sync.WaitGroup // the accept loop and the connection handlers
	served chan struct{}  // closed when Serve returns
}

func newListener(id string, ln net.Listener, log *slog.Logger, adm *admission, o *options, onDone func(net.Conn)) *listener {
	return &listener{
		id: id, ln: ln, log: log, adm: adm, opts: o, onDone: onDone,
		conns: make(map[*trackedConn]struct{}), served: make(chan struct{}),
	}
}

func (l *listener) Init(*slog.Logger) error { return nil }
func (l *listener) ID() string              { return l.id }
func (l *listener) Address() string         { return l.ln.Addr().String() }
func (l *listener) Protocol() string        { return "tcp" }

// Serve accepts until Close. Temporary errors (EMFILE, ECONNABORTED...)
// are retried after a backoff that doubles up to acceptBackoffMax.
func (l *listener) Serve(establish listeners.EstablishFn) {
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
		// mochi does not bound the wait for CONNECT; after CONNECT it
		// replaces this deadline with its keep-alive deadline.
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
			if err := establish(l.id, tc); err != nil {
				l.log.Debug("bridge: connection ended", "remote", tc.RemoteAddr().String(), "err", err)
			}
			_ = tc.Close()
			l.mu.Lock()
			delete(l.conns, tc)
			l.mu.Unlock()
			l.onDone(tc)
		}()
	}
}

func (l *listener) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// Close stops accepting, lets mochi disconnect its clients, then closes
// the connections that had not reached CONNECT yet.
func (l *listener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	_ = l.ln.Close()
	closeClients(l.id)
	l.mu.Lock()
	for tc := range l.conns {
		_ = tc.Close()
	}
	l.mu.Unlock()
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
	// connack is the CONNACK return code of a refused CONNECT, set by the
	// hook before mochi sends the refusal (on the connection's goroutine).
	connack byte
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

// Write bounds every write: mochi sets no write deadline, so a client that
// stops reading would block, for ever, whoever writes to it (a config
// delivery, a command, the DISCONNECT at shutdown) once its socket buffers
// are full. Past writeTimeout the connection is closed.
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

// SetDeadline sets the read deadline only: mochi calls it for its
// keep-alive, which is about reads; writes keep their own bound. (Without
// a write timeout, writes are bounded by the keep-alive, as mochi does.)
func (c *trackedConn) SetDeadline(t time.Time) error {
	if c.writeTimeout <= 0 {
		return c.Conn.SetDeadline(t)
	}
	return c.Conn.SetReadDeadline(t)
}
