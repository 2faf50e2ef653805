package bridge

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// admission decides, as each connection is accepted, whether the bridge
// takes it: it caps the connections held (maxConns), and those still
// pending, accepted but not yet authenticated (TLS handshake, CONNECT, JWT
// check), in all (maxPending) and per source address (perAddr). A refused
// connection is closed at once, so that a flood of silent sockets from one
// address holds at most perAddr of the bridge's file descriptors and none
// of the pending budget of the others. Refusals are counted and logged at
// most once per refusalLogInterval for each address (and limit).
//
// It is shared by the listeners of a Bridge, and lives in the accept path.
type admission struct {
	maxConns, maxPending, perAddr int
	count                         *atomic.Int64 // connections held
	log                           *slog.Logger
	tel                           *instruments
	now                           func() time.Time

	mu      sync.Mutex
	pending int
	byAddr  map[addrKey]int
	notes   refusalNotes
}

// acceptRefusal is the limit that refused a connection at accept, for
// passerelle.bridge.accepts.refused.
type acceptRefusal int

const (
	refusedMaxConnections acceptRefusal = iota
	refusedMaxPending
	refusedMaxPendingPerAddress
	numAcceptRefusals
)

var acceptRefusalNames = [numAcceptRefusals]string{"max_connections", "max_pending", "max_pending_per_address"}

// addrKey is the source a per-address limit counts: an IPv4 address, or an
// IPv6 /64 (one site, which can use as many addresses as it likes in it).
// The zero addrKey is not an IP source (a test's net.Pipe) and has no
// per-address limit.
type addrKey struct{ p netip.Prefix }

func sourceOf(a net.Addr) addrKey {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return addrKey{}
	}
	ip := ta.AddrPort().Addr().Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return addrKey{}
	}
	return addrKey{p}
}

func (k addrKey) String() string {
	if k.p.Addr().Is4() {
		return k.p.Addr().String()
	}
	return k.p.String()
}

// refusalLogInterval is the least time between two log lines about one
// address (or one global limit).
const refusalLogInterval = 10 * time.Second

func newAdmission(o *options, count *atomic.Int64, log *slog.Logger, tel *instruments) *admission {
	a := &admission{
		maxConns: o.maxConns, maxPending: o.maxPending, perAddr: o.maxPendingPerAddr,
		count: count, log: log, tel: tel, now: o.now,
		byAddr: make(map[addrKey]int),
		notes:  refusalNotes{m: make(map[noteKey]*refusalNote)},
	}
	if a.maxPending <= 0 {
		a.maxPending = max(a.maxConns/4, 1)
	}
	a.maxPending = min(a.maxPending, a.maxConns)
	if a.perAddr > 0 {
		a.perAddr = min(a.perAddr, a.maxPending)
	}
	return a
}

// admit takes a slot for a connection from src, pending, or refuses it.
func (a *admission) admit(src addrKey) (acceptRefusal, bool) {
	if a.count.Add(1) > int64(a.maxConns) {
		a.count.Add(-1)
		return refusedMaxConnections, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.pending >= a.maxPending:
		a.count.Add(-1)
		return refusedMaxPending, false
	case src.p.IsValid() && a.perAddr > 0 && a.byAddr[src] >= a.perAddr:
		a.count.Add(-1)
		return refusedMaxPendingPerAddress, false
	}
	a.pending++
	if src.p.IsValid() {
		a.byAddr[src]++
	}
	return 0, true
}

// endPending ends a connection's pending time (authenticated, or closed).
func (a *admission) endPending(src addrKey) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pending--
	if src.p.IsValid() {
		if n := a.byAddr[src] - 1; n > 0 {
			a.byAddr[src] = n
		} else {
			delete(a.byAddr, src)
		}
	}
}

// closed releases a connection's slot.
func (a *admission) closed() { a.count.Add(-1) }

// refused counts a refusal, and logs it unless its address (or limit) was
// logged less than refusalLogInterval ago.
func (a *admission) refused(r acceptRefusal, src addrKey, listener string) {
	a.tel.acceptRefused(r)
	key := noteKey{r: r}
	if r == refusedMaxPendingPerAddress {
		key.src = src
	}
	a.mu.Lock()
	n, shared, report := a.notes.note(key, a.now())
	a.mu.Unlock()
	if !report {
		return
	}
	attrs := []any{"listener", listener, "refused", n, "per", refusalLogInterval}
	switch r {
	case refusedMaxConnections:
		a.log.Warn("bridge: connection cap reached, closing new connections", append(attrs, "max_connections", a.maxConns)...)
	case refusedMaxPending:
		a.log.Warn("bridge: too many connections waiting to authenticate, closing new ones", append(attrs, "max_pending", a.maxPending)...)
	default:
		addr := src.String()
		if shared {
			addr = "many addresses"
		}
		a.log.Warn("bridge: too many connections from one address waiting to authenticate, closing new ones from it",
			append(attrs, "addr", addr, "max_pending_per_address", a.perAddr)...)
	}
}

// refusalNotes remember, per address and limit, when a refusal was last
// logged and how many came since. They are bounded: past maxRefusalNotes
// addresses, the stale notes go, and then further addresses share one.
// Stale notes are looked for at most once per refusalLogInterval: in a
// flood from many addresses every refusal comes here, in the accept path.
type refusalNotes struct {
	m     map[noteKey]*refusalNote
	swept time.Time // when stale notes were last looked for
}

type noteKey struct {
	r   acceptRefusal
	src addrKey
}

type refusalNote struct {
	at time.Time // when it was last logged
	n  int       // refusals since (including the one being logged)
}

const maxRefusalNotes = 1024

// note records one refusal; it reports whether to log it, how many
// refusals the line stands for, and whether the note is shared by many
// addresses.
func (ns *refusalNotes) note(k noteKey, now time.Time) (n int, shared, report bool) {
	nt := ns.m[k]
	if nt == nil {
		if len(ns.m) >= maxRefusalNotes && now.Sub(ns.swept) >= refusalLogInterval {
			ns.swept = now
			for k, v := range ns.m {
				if now.Sub(v.at) >= refusalLogInterval {
					delete(ns.m, k)
				}
			}
		}
		if len(ns.m) >= maxRefusalNotes {
			k.src, shared = addrKey{}, true // one note for every address left
			nt = ns.m[k]
		}
		if nt == nil {
			nt = &refusalNote{}
			ns.m[k] = nt
		}
	}
	nt.n++
	if !nt.at.IsZero() && now.Sub(nt.at) < refusalLogInterval {
		return 0, shared, false
	}
	n = nt.n
	nt.at, nt.n = now, 0
	return n, shared, true
}
