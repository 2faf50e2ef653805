package bridge

import (
	"sync"

	"github.com/passerelle-iot/passerelle/pkg/mqttwire"
)

// pubacks is a connection's queue of QoS 1 PUBACKs, in the order of their
// PUBLISHes (MQTT 3.1.1 section 4.6): an event is sent to the stream
// without waiting (several are in flight on one connection, up to
// WithEventsInFlight), and its PUBACK goes out once the stream has
// acknowledged it and every earlier PUBLISH of the connection has been
// answered. The PUBACKs that are ready together go out in one write.
//
// The connection's reader appends (reserve, then ready or publish's done);
// the stream's acknowledgement goroutine marks entries done; a flusher,
// at most one per connection and only while PUBACKs are waiting to be
// written, writes them. The flusher never runs on the acknowledgement
// goroutine, so a slow reader holds up its own PUBACKs only.
type pubacks struct {
	write func([]byte) error // one write of whole packets
	stop  <-chan struct{}    // the bridge stops
	spawn func(func()) bool  // runs a flusher; false once the bridge stopped
	slots chan struct{}      // one token per PUBLISH not yet answered
	dead  chan struct{}      // closed by fail

	mu       sync.Mutex
	q        []pubackEntry // head first
	head     uint64        // sequence number of q[0]
	flushing bool          // a flusher runs (or the reader flushes inline)
	failed   bool          // a PUBLISH failed: nothing after it is acknowledged
	buf      []byte        // the flusher's; grows to the largest batch
}

type pubackEntry struct {
	pid   uint16
	state answer
}

// answer is what a PUBLISH of the queue gets.
type answer uint8

const (
	answerPending answer = iota // being processed, or in flight to the stream
	answerPuback                // accepted: PUBACK
	answerNone                  // refused without closing (a gateway error): no PUBACK
)

func newPubacks(n int, write func([]byte) error, stop <-chan struct{}, spawn func(func()) bool) *pubacks {
	if n < 1 {
		n = 1
	}
	return &pubacks{write: write, stop: stop, spawn: spawn, slots: make(chan struct{}, n), dead: make(chan struct{})}
}

// reserve waits for room (a PUBLISH in flight fewer than the limit) and
// appends an entry for pid, returning its sequence number; false when
// the queue failed or the bridge stops first. A slot is freed when its
// PUBACK is written; every publish ends, with an acknowledgement or the
// bus's publish timeout, and a failure ends the queue.
func (p *pubacks) reserve(pid uint16) (uint64, bool) {
	select {
	case p.slots <- struct{}{}:
	case <-p.dead:
		return 0, false
	case <-p.stop:
		return 0, false
	}
	p.mu.Lock()
	if p.failed {
		p.mu.Unlock()
		<-p.slots
		return 0, false
	}
	seq := p.head + uint64(len(p.q))
	p.q = append(p.q, pubackEntry{pid: pid})
	p.mu.Unlock()
	return seq, true
}

// ready marks entry seq answered with a (answerPuback or answerNone).
// inline runs the flush on the calling
// goroutine (the connection's reader, which may block on its own socket),
// otherwise on a flusher goroutine.
func (p *pubacks) ready(seq uint64, a answer, inline bool) {
	p.mu.Lock()
	if p.failed || seq < p.head {
		p.mu.Unlock()
		return
	}
	p.q[seq-p.head].state = a
	start := seq == p.head && !p.flushing
	if start {
		p.flushing = true
	}
	p.mu.Unlock()
	if !start {
		return // a running flusher, or a later ready, writes it
	}
	if inline {
		p.flush()
		return
	}
	if !p.spawn(p.flush) {
		p.fail() // the bridge is stopping: nothing more is written
	}
}

// fail stops the queue: no PUBACK for seq or any later PUBLISH (the
// device sends them again once it reconnects).
func (p *pubacks) fail() {
	p.mu.Lock()
	if !p.failed {
		p.failed = true
		close(p.dead)
	}
	p.mu.Unlock()
}

// flush writes the PUBACKs ready at the head of the queue, batch after
// batch, until none is ready; only one flush runs at a time.
func (p *pubacks) flush() {
	for {
		p.mu.Lock()
		n := 0
		for n < len(p.q) && p.q[n].state != answerPending {
			n++
		}
		if n == 0 || p.failed {
			p.flushing = false
			p.mu.Unlock()
			return
		}
		buf := p.buf[:0]
		for _, e := range p.q[:n] {
			if e.state == answerPuback {
				buf = mqttwire.AppendPuback(buf, e.pid)
			}
		}
		p.buf = buf
		rest := copy(p.q, p.q[n:])
		p.q = p.q[:rest]
		p.head += uint64(n)
		p.mu.Unlock()

		var err error
		if len(buf) > 0 {
			err = p.write(buf)
		}
		for range n {
			<-p.slots
		}
		if err != nil {
			p.fail()
			p.mu.Lock()
			p.flushing = false
			p.mu.Unlock()
			return
		}
	}
}

// acks returns the connection's PUBACK queue, made at its first QoS 1
// PUBLISH (an idle connection does not pay for it). Only the reader calls
// it.
func (c *conn) acks() *pubacks {
	if c.pubacks == nil {
		c.pubacks = newPubacks(c.b.opts.eventsInFlight, c.write, c.b.ctx.Done(), c.b.flushers.goFunc)
	}
	return c.pubacks
}

// goGroup owns short-lived goroutines started from callbacks that may
// outlive the bridge (a stream acknowledgement after Serve returned):
// once stopped, it starts no more.
type goGroup struct {
	mu      sync.Mutex
	stopped bool
	wg      sync.WaitGroup
}

// goFunc runs f on a new goroutine, unless the group stopped.
func (g *goGroup) goFunc(f func()) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return false
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		f()
	}()
	return true
}

// stop starts no more goroutines and waits for those running.
func (g *goGroup) stop() {
	g.mu.Lock()
	g.stopped = true
	g.mu.Unlock()
	g.wg.Wait()
}
