package manager

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// http2Preface is what every HTTP/2 client sends first (RFC 9113 §3.4). On a
// plaintext port it can only be gRPC (prior-knowledge h2c): the REST clients
// speak HTTP/1.1.
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// splitListener accepts connections on one listener and hands each to the
// gRPC side or the HTTP/1.1 side by its first bytes. Sniffing happens in a
// goroutine per connection under a read deadline, so a slow or silent client
// never holds up Accept for the others.
type splitListener struct {
	logger       *slog.Logger
	root         net.Listener
	sniffTimeout time.Duration

	grpc *subListener
	http *subListener

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	mu       sync.Mutex
	sniffing map[net.Conn]struct{}
}

func newSplitListener(logger *slog.Logger, root net.Listener, sniffTimeout time.Duration) *splitListener {
	s := &splitListener{
		logger:       logger,
		root:         root,
		sniffTimeout: sniffTimeout,
		done:         make(chan struct{}),
		sniffing:     make(map[net.Conn]struct{}),
	}
	s.grpc = newSubListener(s)
	s.http = newSubListener(s)
	return s
}

// start runs the accept loop in a goroutine that Close waits for.
func (s *splitListener) start() {
	s.wg.Add(1)
	go s.run()
}

// run accepts until the root listener fails for good or Close is called.
func (s *splitListener) run() {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		conn, err := s.root.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				s.fail(err)
				return
			}
			// Anything else (EMFILE, ECONNABORTED ...) passes: keep
			// accepting with a capped backoff rather than going deaf.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.logger.Warn("accept failed; retrying", "err", err, "backoff", backoff)
			select {
			case <-time.After(backoff):
			case <-s.done:
				return
			}
			continue
		}
		backoff = 0
		s.mu.Lock()
		select {
		case <-s.done:
			s.mu.Unlock()
			conn.Close()
			return
		default:
		}
		s.sniffing[conn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.sniff(conn)
	}
}

func (s *splitListener) sniff(conn net.Conn) {
	defer s.wg.Done()
	target, pc, err := s.classify(conn)
	s.mu.Lock()
	delete(s.sniffing, conn)
	s.mu.Unlock()
	if err != nil {
		s.logger.Debug("connection closed before its protocol was known", "remote", conn.RemoteAddr(), "err", err)
		conn.Close()
		return
	}
	select {
	case target.conns <- pc:
	case <-target.closed:
		conn.Close()
	case <-s.done:
		conn.Close()
	}
}

// classify reads just enough of conn to tell the HTTP/2 preface from
// anything else: it stops at the first byte that differs.
func (s *splitListener) classify(conn net.Conn) (*subListener, net.Conn, error) {
	if err := conn.SetReadDeadline(time.Now().Add(s.sniffTimeout)); err != nil {
		return nil, nil, err
	}
	buf := make([]byte, 0, len(http2Preface))
	for len(buf) < len(http2Preface) {
		n, err := conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if !bytes.HasPrefix([]byte(http2Preface), buf) {
			break
		}
		if err != nil {
			return nil, nil, err
		}
	}
	if err := conn.SetReadDeadline(time.Time{}); err != nil {
		return nil, nil, err
	}
	pc := &prefixConn{Conn: conn, prefix: buf}
	if string(buf) == http2Preface {
		return s.grpc, pc, nil
	}
	return s.http, pc, nil
}

// fail ends both sides with err (the root listener is gone).
func (s *splitListener) fail(err error) {
	s.grpc.fail(err)
	s.http.fail(err)
}

// Close stops accepting, closes connections still being sniffed and waits
// for every goroutine of the listener. Connections already handed over
// belong to their server.
func (s *splitListener) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.mu.Lock()
		close(s.done)
		for c := range s.sniffing {
			c.Close()
		}
		s.mu.Unlock()
		err = s.root.Close()
		s.wg.Wait()
	})
	return err
}

// subListener is one side of a splitListener, served by one server.
type subListener struct {
	parent *splitListener
	conns  chan net.Conn

	closeOnce sync.Once
	closed    chan struct{}

	errOnce sync.Once
	failed  chan struct{}
	err     error
}

func newSubListener(parent *splitListener) *subListener {
	return &subListener{
		parent: parent,
		conns:  make(chan net.Conn),
		closed: make(chan struct{}),
		failed: make(chan struct{}),
	}
}

func (l *subListener) fail(err error) {
	l.errOnce.Do(func() {
		l.err = err
		close(l.failed)
	})
}

// Accept implements net.Listener.
func (l *subListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	case <-l.parent.done:
		return nil, net.ErrClosed
	case <-l.failed:
		return nil, l.err
	}
}

// Close implements net.Listener: it closes this side only; the owner of
// the splitListener closes the root.
func (l *subListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

// Addr implements net.Listener.
func (l *subListener) Addr() net.Addr { return l.parent.root.Addr() }

// prefixConn replays the sniffed bytes before reading on.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
