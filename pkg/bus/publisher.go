package bus

import (
	"bytes"
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// publisher sends the Bus's asynchronous publishes to the stream and
// matches the stream's answers to them: each attempt gets a reply subject
// of its own under one wildcard subscription, and its answer, its
// timeout, or the loss of the connection ends it with one call of finish
// (nil: stored). It does what jetstream's PublishMsgAsync did for the Bus
// at less cost a message, which the bridge pays once per event: reply
// ids are counters in a map of integers, not random tokens; an answer is
// recognised as a PubAck without decoding its JSON (only errors are
// decoded); and timeouts are found by one sweep of the attempts in
// flight, not by a timer each. What to send again, and when, is the
// Bus's (resendLocked): publisher sends each attempt once.
type publisher struct {
	nc      *nats.Conn
	prefix  string        // of the reply subjects: an inbox and a dot
	timeout time.Duration // an attempt's, from its send
	finish  func(m *nats.Msg, err error)

	mu      sync.Mutex
	flights map[uint64]flight // attempts in flight, by reply id
	next    uint64            // the last reply id given
	closed  bool
	idle    chan struct{} // closed once no attempt is in flight; nil unless waited for

	sub    *nats.Subscription
	status chan nats.Status // the connection's RECONNECTING and CLOSED
	stop   chan struct{}
	wg     sync.WaitGroup // sweep and watch
}

type flight struct {
	m        *nats.Msg
	deadline time.Time
}

// sweepsPerTimeout is how many times a timeout the attempts in flight are
// looked over: an attempt times out at most a quarter late.
const sweepsPerTimeout = 4

func newPublisher(nc *nats.Conn, timeout time.Duration, finish func(*nats.Msg, error)) (*publisher, error) {
	p := &publisher{nc: nc, prefix: nc.NewInbox() + ".", timeout: timeout, finish: finish,
		flights: make(map[uint64]flight), stop: make(chan struct{})}
	sub, err := nc.Subscribe(p.prefix+"*", p.onReply)
	if err != nil {
		return nil, err
	}
	// The answers come on one goroutine, the subscription's; never drop
	// one for a slow handler (each ends an attempt).
	_ = sub.SetPendingLimits(-1, -1)
	p.sub = sub
	p.status = nc.StatusChanged(nats.RECONNECTING, nats.CLOSED)
	p.wg.Add(2)
	go p.sweep()
	go p.watch()
	return p, nil
}

// publish sends one attempt of m, copied (m itself is never changed, so
// attempts of one message may overlap), and returns once it is sent or
// buffered for a reconnection; finish then runs exactly once for it. On
// an error finish does not run for it.
func (p *publisher) publish(m *nats.Msg) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return jetstream.ErrJetStreamPublisherClosed
	}
	p.next++
	id := p.next
	p.flights[id] = flight{m: m, deadline: time.Now().Add(p.timeout)}
	p.mu.Unlock()
	var buf [32]byte
	reply := p.prefix + string(strconv.AppendUint(buf[:0], id, 36))
	if err := p.nc.PublishMsg(&nats.Msg{Subject: m.Subject, Reply: reply, Header: m.Header, Data: m.Data}); err != nil {
		p.mu.Lock()
		_, ok := p.flights[id]
		p.removeLocked(id)
		p.mu.Unlock()
		if !ok {
			// Already ended (the connection was lost under it), and
			// finish ran: the error is that one's.
			return nil
		}
		return err
	}
	return nil
}

// removeLocked ends attempt id's tracking; mu is held.
func (p *publisher) removeLocked(id uint64) {
	delete(p.flights, id)
	if len(p.flights) == 0 && p.idle != nil {
		close(p.idle)
		p.idle = nil
	}
}

// onReply is the stream's answer to one attempt.
func (p *publisher) onReply(rm *nats.Msg) {
	id, err := strconv.ParseUint(rm.Subject[len(p.prefix):], 36, 64)
	if err != nil {
		return
	}
	p.mu.Lock()
	f, ok := p.flights[id]
	if ok {
		p.removeLocked(id)
	}
	p.mu.Unlock()
	if ok {
		p.finish(f.m, pubAckError(rm))
	}
}

// pubAckPrefix begins every PubAck a stream sends ({"stream":"NAME",
// "seq":N...}).
var pubAckPrefix = []byte(`{"stream":`)

// pubAckError reads a stream's answer: nil for a PubAck (a duplicate's
// too), the stream's *jetstream.APIError, or the error of an answer that
// is none (no stream listens on the subject: a leader being elected).
func pubAckError(rm *nats.Msg) error {
	if len(rm.Data) == 0 {
		if rm.Header.Get("Status") == "503" {
			return jetstream.ErrNoStreamResponse
		}
		return jetstream.ErrInvalidJSAck
	}
	if bytes.HasPrefix(rm.Data, pubAckPrefix) && !bytes.Contains(rm.Data, []byte(`"error"`)) {
		return nil
	}
	var r struct {
		Stream string              `json:"stream"`
		Error  *jetstream.APIError `json:"error"`
	}
	switch {
	case json.Unmarshal(rm.Data, &r) != nil:
		return jetstream.ErrInvalidJSAck
	case r.Error != nil:
		return r.Error
	case r.Stream == "":
		return jetstream.ErrInvalidJSAck
	}
	return nil
}

// sweep ends the attempts that got no answer within the timeout.
func (p *publisher) sweep() {
	defer p.wg.Done()
	t := time.NewTicker(max(p.timeout/sweepsPerTimeout, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			p.endAll(func(f flight) bool { return now.After(f.deadline) }, jetstream.ErrAsyncPublishTimeout)
		}
	}
}

// watch ends every attempt in flight when the connection is lost (the
// client is reconnecting, to this server or another: an answer may never
// come) or closed.
func (p *publisher) watch() {
	defer p.wg.Done()
	for {
		select {
		case <-p.stop:
			return
		case s, ok := <-p.status:
			if !ok {
				return // removed by close, or the connection closed
			}
			err := nats.ErrDisconnected
			if s == nats.CLOSED {
				err = nats.ErrConnectionClosed
			}
			p.endAll(func(flight) bool { return true }, err)
		}
	}
}

// endAll ends the attempts in flight that match with err.
func (p *publisher) endAll(match func(flight) bool, err error) {
	var ended []*nats.Msg
	p.mu.Lock()
	for id, f := range p.flights {
		if match(f) {
			ended = append(ended, f.m)
			p.removeLocked(id)
		}
	}
	p.mu.Unlock()
	for _, m := range ended {
		p.finish(m, err)
	}
}

// inFlight returns the attempts in flight.
func (p *publisher) inFlight() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.flights)
}

// waitIdle waits until no attempt is in flight, at most d; false if some
// still are.
func (p *publisher) waitIdle(d time.Duration) bool {
	p.mu.Lock()
	if len(p.flights) == 0 {
		p.mu.Unlock()
		return true
	}
	if p.idle == nil {
		p.idle = make(chan struct{})
	}
	idle := p.idle
	p.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-idle:
		return true
	case <-t.C:
		return false
	}
}

// close sends nothing more, stops the subscription and the goroutines,
// and ends what is in flight with jetstream.ErrJetStreamPublisherClosed.
// An answer being handled as close unsubscribes may still finish its
// attempt after close returns (Unsubscribe does not wait for it).
func (p *publisher) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	_ = p.sub.Unsubscribe()
	p.nc.RemoveStatusListener(p.status)
	close(p.stop)
	p.wg.Wait()
	p.endAll(func(flight) bool { return true }, jetstream.ErrJetStreamPublisherClosed)
}
