package bridge

import (
	"net"
	"sync"

	"github.com/passerelle-iot/passerelle/pkg/mqttwire"
)

// The bridge's MQTT connection layer reads and writes packets with
// pkg/mqttwire, on one goroutine per active connection that holds no
// buffer while its device is silent: it waits on a one-byte read, then
// takes a buffer from a pool for as long as bytes are waiting (a packet,
// or a burst of them), and gives it back once they are handled. A plain
// connection whose bursts come close together reads straight into a
// buffer instead (waitHot), one system call a burst instead of two. A
// connection silent for parkAfter gives up its goroutine too: its
// listener's parker (park_linux.go) watches the socket and resumes it.
// Writes are whole packets encoded into pooled buffers, one write per
// packet or per batch of PUBACKs, with no writer goroutine.

// maxPacket is the largest remaining length read: a 256 KB event plus its
// topic and header. Larger packets are refused as soon as their fixed
// header is read, before their body is buffered.
const maxPacket = maxEventBytes + 2<<10

// bufClass is a pool of buffers of one size.
type bufClass struct {
	size int
	pool sync.Pool
}

// bufClasses are the read and write buffer sizes, smallest first: most
// packets fit the first; the last holds the largest packet.
var bufClasses = [...]*bufClass{{size: 4 << 10}, {size: 64 << 10}, {size: maxPacket + 8}}

// getBuf returns a pooled buffer of at least n bytes (its whole capacity
// as length), or a new one when n is larger than every class.
func getBuf(n int) *[]byte {
	for _, c := range bufClasses {
		if n <= c.size {
			if b, ok := c.pool.Get().(*[]byte); ok {
				return b
			}
			b := make([]byte, c.size)
			return &b
		}
	}
	b := make([]byte, n)
	return &b
}

// putBuf gives a buffer from getBuf back.
func putBuf(b *[]byte) {
	for _, c := range bufClasses {
		if cap(*b) == c.size {
			*b = (*b)[:c.size]
			c.pool.Put(b)
			return
		}
	}
}

// pktReader reads whole packets from a connection. Only the connection's
// goroutine uses it. The body next returns is valid until the next call.
type pktReader struct {
	nc   net.Conn
	one  [1]byte // what an idle connection waits on
	buf  *[]byte // nil while no bytes wait
	r, w int     // (*buf)[r:w] is read and not yet handled
}

// next returns the next packet, reading until it is whole; ok is false
// when every byte read was handled (the caller then waits). Errors are the
// connection's (EOF, a deadline) or mqttwire's (ErrMalformed,
// ErrTooLarge).
func (p *pktReader) next() (h mqttwire.Header, body []byte, ok bool, err error) {
	for p.w > p.r {
		b := (*p.buf)[p.r:p.w]
		h, body, n, err := mqttwire.Next(b, maxPacket)
		if err != nil {
			return h, nil, false, err
		}
		if n > 0 {
			p.r += n
			return h, body, true, nil
		}
		need := len(b) + 1 // the fixed header is not whole yet
		if h.Remaining > 0 {
			need = mqttwire.HeaderLen(h.Remaining) + h.Remaining
		}
		p.room(need)
		k, err := p.nc.Read((*p.buf)[p.w:])
		p.w += k
		if k == 0 && err != nil {
			return h, nil, false, err
		}
		// A read error with bytes comes again on the next read.
	}
	return mqttwire.Header{}, nil, false, nil
}

// wait gives the buffer back and waits for the connection's next byte,
// holding nothing but the goroutine: it is kept shallow, as the stack it
// blocks on is what an idle connection costs once the collector has
// shrunk it.
//
//go:noinline
func (p *pktReader) wait() error {
	p.release()
	for {
		k, err := p.nc.Read(p.one[:])
		if k == 1 {
			p.buf = getBuf(0)
			(*p.buf)[0] = p.one[0]
			p.r, p.w = 0, 1
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// waitHot is wait for a connection whose packets come in quick
// succession: it reads straight into a pooled buffer, in one system call
// where wait needs two (its byte, then the rest). The buffer is held
// while the read waits, so only a plain connection that sent within
// hotGap waits so, and at most until its read deadline (its parking, or
// its keep-alive); it is given back with the read's error. Over TLS the
// one-byte read already takes a whole record into tls.Conn's buffer.
func (p *pktReader) waitHot() error {
	if p.buf != nil && cap(*p.buf) > bufClasses[0].size {
		p.release() // a large packet's: not held while waiting
	}
	if p.buf == nil {
		p.buf = getBuf(0)
	}
	p.r, p.w = 0, 0 // every byte read was handled
	for {
		k, err := p.nc.Read(*p.buf)
		if k > 0 {
			p.w = k
			return nil
		}
		if err != nil {
			p.release()
			return err
		}
	}
}

// room makes the buffer hold need bytes from p.r: compacted, or moved to
// a larger buffer.
func (p *pktReader) room(need int) {
	if len(*p.buf)-p.r >= need {
		return
	}
	if len(*p.buf) >= need {
		p.w = copy(*p.buf, (*p.buf)[p.r:p.w])
		p.r = 0
		return
	}
	nb := getBuf(need)
	p.w = copy(*nb, (*p.buf)[p.r:p.w])
	p.r = 0
	putBuf(p.buf)
	p.buf = nb
}

// release gives the buffer back once every byte read was handled.
func (p *pktReader) release() {
	if p.buf != nil {
		putBuf(p.buf)
		p.buf = nil
	}
	p.r, p.w = 0, 0
}
