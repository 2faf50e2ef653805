package bridge

import (
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

func TestSourceOf(t *testing.T) {
	key := func(s string) addrKey { return sourceOf(&net.TCPAddr{IP: net.ParseIP(s), Port: 1234}) }
	if key("10.0.0.1") == key("10.0.0.2") {
		t.Error("two IPv4 addresses share a key")
	}
	if key("10.0.0.1") != key("::ffff:10.0.0.1") {
		t.Error("an IPv4-mapped address is not its IPv4 address")
	}
	if key("2001:db8:1:2::1") != key("2001:db8:1:2:ffff::9") {
		t.Error("two addresses of one IPv6 /64 have different keys")
	}
	if key("2001:db8:1:2::1") == key("2001:db8:1:3::1") {
		t.Error("two IPv6 /64s share a key")
	}
	if got := key("2001:db8:1:2::1").String(); got != "2001:db8:1:2::/64" {
		t.Errorf("String() = %q", got)
	}
	if k := sourceOf(&net.UnixAddr{Name: "x"}); k.p.IsValid() {
		t.Error("a unix address has a per-address key")
	}
}

func TestAdmission(t *testing.T) {
	tel, err := newInstruments(tracenoop.NewTracerProvider(), metricnoop.NewMeterProvider())
	if err != nil {
		t.Fatal(err)
	}
	var count atomic.Int64
	o := defaultOptions()
	o.maxConns, o.maxPending, o.maxPendingPerAddr = 10, 5, 2
	a := newAdmission(&o, &count, slog.New(slog.NewTextHandler(io.Discard, nil)), tel)
	x := sourceOf(&net.TCPAddr{IP: net.ParseIP("10.0.0.1")})
	y := sourceOf(&net.TCPAddr{IP: net.ParseIP("10.0.0.2")})
	admit := func(src addrKey, want acceptRefusal, ok bool) {
		t.Helper()
		if r, got := a.admit(src); got != ok || (!ok && r != want) {
			t.Fatalf("admit = %v %v, want %v %v", acceptRefusalNames[r], got, acceptRefusalNames[want], ok)
		}
	}
	admit(x, 0, true)
	admit(x, 0, true)
	admit(x, refusedMaxPendingPerAddress, false)
	admit(y, 0, true)
	a.endPending(x) // one of x's is in: x may have another pending
	admit(x, 0, true)
	admit(y, 0, true)
	admit(y, refusedMaxPendingPerAddress, false)
	if a.pending != 4 || count.Load() != 5 {
		t.Fatalf("pending %d, held %d; want 4 and 5", a.pending, count.Load())
	}
	z := sourceOf(&net.TCPAddr{IP: net.ParseIP("10.0.0.3")})
	admit(z, 0, true)
	admit(z, refusedMaxPending, false) // 5 pending
	for _, src := range []addrKey{x, x, y, y, z} {
		a.endPending(src)
	}
	if a.pending != 0 || len(a.byAddr) != 0 {
		t.Fatalf("pending %d, by address %v after every one authenticated", a.pending, a.byAddr)
	}
	for range 4 {
		admit(addrKey{}, 0, true)
	}
	admit(addrKey{}, refusedMaxConnections, false) // 10 held
	a.closed()
	admit(addrKey{}, 0, true)

	// Defaults: a quarter of the cap, and never more than it.
	o.maxPending, o.maxPendingPerAddr = 0, 128
	if d := newAdmission(&o, &count, nil, tel); d.maxPending != 2 || d.perAddr != 2 {
		t.Errorf("maxPending %d, perAddr %d; want 2 and 2", d.maxPending, d.perAddr)
	}
}

func TestRefusalNotes(t *testing.T) {
	ns := refusalNotes{m: make(map[noteKey]*refusalNote)}
	now := time.Now()
	k := noteKey{r: refusedMaxPendingPerAddress, src: sourceOf(&net.TCPAddr{IP: net.ParseIP("10.0.0.1")})}
	if n, _, report := ns.note(k, now); !report || n != 1 {
		t.Fatalf("first refusal: %d %v", n, report)
	}
	for i := range 99 {
		if _, _, report := ns.note(k, now.Add(time.Duration(i)*time.Millisecond)); report {
			t.Fatal("a second line within the interval")
		}
	}
	if n, _, report := ns.note(k, now.Add(refusalLogInterval)); !report || n != 100 {
		t.Fatalf("after the interval: %d %v, want a line for 100 refusals", n, report)
	}
	// Bounded: many addresses end up sharing a note.
	for i := range 3 * maxRefusalNotes {
		ip := net.IPv4(10, byte(i>>16), byte(i>>8), byte(i))
		ns.note(noteKey{r: refusedMaxPendingPerAddress, src: sourceOf(&net.TCPAddr{IP: ip})}, now)
	}
	if len(ns.m) > maxRefusalNotes+1 {
		t.Fatalf("%d notes, want at most %d", len(ns.m), maxRefusalNotes+1)
	}
	// Once the notes are stale, a new address has a note of its own again.
	fresh := noteKey{r: refusedMaxPendingPerAddress, src: sourceOf(&net.TCPAddr{IP: net.IPv4(192, 0, 2, 1)})}
	if n, shared, report := ns.note(fresh, now.Add(refusalLogInterval)); shared || !report || n != 1 {
		t.Fatalf("a new address after the interval: %d %v %v, want its own line for 1 refusal", n, shared, report)
	}
}

// BenchmarkRefusalNotesFlood: a refusal from a new address while the notes
// are full, as in a flood from many addresses.
func BenchmarkRefusalNotesFlood(b *testing.B) {
	ns := refusalNotes{m: make(map[noteKey]*refusalNote)}
	now := time.Now()
	key := func(i int) noteKey {
		ip := net.IPv4(10, byte(i>>16), byte(i>>8), byte(i))
		return noteKey{r: refusedMaxPendingPerAddress, src: sourceOf(&net.TCPAddr{IP: ip})}
	}
	for i := range maxRefusalNotes {
		ns.note(key(i), now)
	}
	i := maxRefusalNotes
	for b.Loop() {
		ns.note(key(i), now)
		i++
	}
}
