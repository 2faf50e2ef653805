//go:build linux

package bridge

import (
	"errors"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// parker holds a listener's idle connections without a goroutine each.
// A connection silent for parkAfter hands its socket to the parker and
// its goroutine ends; the parker watches every parked socket with one
// epoll set of its own (one-shot, so each wakes once) and one goroutine,
// and resumes a connection on a new goroutine when its socket is
// readable, when it is closed, or when its keep-alive has run out. A
// parked connection costs its state and its socket, not a stack.
//
// Go's own poller keeps watching the sockets: an fd may be in several
// epoll sets, and a read on the resumed goroutine goes through net.Conn
// as before.
type parker struct {
	epfd  int
	evfd  int // wakes the loop for close
	wake  func(*trackedConn)
	count func(delta int64) // connections parked

	mu     sync.Mutex
	parked map[uint64]parkedConn // by token
	next   uint64                // the last token given; 0 is the eventfd's
	closed bool
	done   chan struct{} // closed when loop returns
}

type parkedConn struct {
	tc       *trackedConn
	deadline time.Time // resumed then, to expire
}

// sweepEvery is how often the parker looks for parked connections whose
// keep-alive ran out; a device is closed at most this late.
const sweepEvery = time.Second

// newParker starts a parker that resumes connections with wake, which
// must not block, and tells count how many it holds.
func newParker(wake func(*trackedConn), count func(delta int64)) (*parker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, err
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &unix.EpollEvent{Events: unix.EPOLLIN}); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(evfd)
		return nil, err
	}
	p := &parker{epfd: epfd, evfd: evfd, wake: wake, count: count, parked: make(map[uint64]parkedConn), done: make(chan struct{})}
	go p.loop()
	return p, nil
}

// park hands tc to the parker until its socket is readable or closed, or
// until deadline. It reports false when tc cannot be parked (its socket
// is closed or not a kernel socket, or the parker is closed): the caller
// then keeps waiting on its own goroutine. Once park returns true, tc
// belongs to the goroutine wake starts: the caller must not touch it.
func (p *parker) park(tc *trackedConn, deadline time.Time) bool {
	if p == nil || tc.raw == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	tok, op := tc.parkTok, unix.EPOLL_CTL_MOD
	if tok == 0 {
		p.next++
		tok, op = p.next, unix.EPOLL_CTL_ADD
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(uint32(tok)), Pad: int32(uint32(tok >> 32))}
	var cerr error
	// Control fails once the socket is closed: then it is not parked, and
	// the caller's read sees the close.
	if err := tc.raw.Control(func(fd uintptr) { cerr = unix.EpollCtl(p.epfd, op, int(fd), &ev) }); err != nil || cerr != nil {
		return false
	}
	tc.parkTok = tok
	p.parked[tok] = parkedConn{tc: tc, deadline: deadline}
	p.count(1)
	return true
}

// unpark resumes tc if it is parked: its socket was just closed, which
// takes it out of the epoll set without an event.
func (p *parker) unpark(tc *trackedConn) {
	p.mu.Lock()
	e, ok := p.parked[tc.parkTok]
	ok = ok && e.tc == tc
	if ok {
		delete(p.parked, tc.parkTok)
	}
	p.mu.Unlock()
	if ok {
		p.count(-1)
		p.wake(tc)
	}
}

// loop resumes the connections whose sockets are ready, and every second
// those whose keep-alive ran out, until close.
func (p *parker) loop() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 256)
	var ready []*trackedConn
	swept := time.Now()
	for {
		n, err := unix.EpollWait(p.epfd, events, int(sweepEvery/time.Millisecond))
		if err != nil && !errors.Is(err, unix.EINTR) {
			// Not expected on a valid epoll fd; resume everything so that
			// no connection waits for a wake that cannot come.
			p.shutdown()
			return
		}
		now := time.Now()
		ready = ready[:0]
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			p.shutdown()
			return
		}
		for _, ev := range events[:max(n, 0)] {
			tok := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if e, ok := p.parked[tok]; ok {
				delete(p.parked, tok)
				ready = append(ready, e.tc)
			}
		}
		if now.Sub(swept) >= sweepEvery {
			swept = now
			for tok, e := range p.parked {
				if !now.Before(e.deadline) {
					delete(p.parked, tok)
					ready = append(ready, e.tc)
				}
			}
		}
		p.mu.Unlock()
		if len(ready) > 0 {
			p.count(-int64(len(ready)))
		}
		for _, tc := range ready {
			p.wake(tc)
		}
	}
}

// shutdown resumes every connection still parked and releases the epoll
// set; park refuses from now on.
func (p *parker) shutdown() {
	p.mu.Lock()
	p.closed = true
	rest := p.parked
	p.parked = nil
	p.mu.Unlock()
	p.count(-int64(len(rest)))
	for _, e := range rest {
		p.wake(e.tc)
	}
	_ = unix.Close(p.epfd)
	_ = unix.Close(p.evfd)
}

// close stops the parker, resuming what it still holds, and waits for
// its goroutine.
func (p *parker) close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		// Under the lock: the loop closes the eventfd only after it saw
		// closed.
		one := [8]byte{1} // any non-zero count wakes, in either byte order
		_, _ = unix.Write(p.evfd, one[:])
	}
	p.mu.Unlock()
	<-p.done
}
