package bridge

import (
	"bytes"
	"errors"
	"sync"
	"testing"

	"github.com/passerelle-iot/passerelle/pkg/mqttwire"
)

// pubackRecorder is a connection's socket for pubacks: it records each
// write, so a test sees both the order and the batching.
type pubackRecorder struct {
	mu     sync.Mutex
	writes [][]byte
	err    error
}

func (r *pubackRecorder) write(p []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, bytes.Clone(p))
	return r.err
}

func (r *pubackRecorder) all() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Join(r.writes, nil)
}

func pubackBytes(pids ...uint16) []byte {
	var b []byte
	for _, pid := range pids {
		b = mqttwire.AppendPuback(b, pid)
	}
	return b
}

// inline runs a flusher on the caller's goroutine, so the test sees its
// writes as soon as ready returns.
func inline(f func()) bool { f(); return true }

// TestPubacksInOrder: PUBLISHes answered out of order (as acknowledgements
// of several events in flight may arrive) get their PUBACKs in the order
// of the PUBLISHes, the ones ready together in one write; a refused one
// (a gateway error) gets none and does not hold up the others.
func TestPubacksInOrder(t *testing.T) {
	var r pubackRecorder
	p := newPubacks(8, r.write, make(chan struct{}), inline)
	var seqs []uint64
	for pid := uint16(1); pid <= 5; pid++ {
		seq, ok := p.reserve(pid)
		if !ok {
			t.Fatal("reserve refused")
		}
		seqs = append(seqs, seq)
	}
	p.ready(seqs[4], answerPuback, false)
	p.ready(seqs[2], answerNone, false)
	p.ready(seqs[1], answerPuback, false)
	if got := r.all(); len(got) != 0 {
		t.Fatalf("PUBACKs % x written before the first PUBLISH was answered", got)
	}
	p.ready(seqs[0], answerPuback, false) // 1, 2 and (no answer for 3) go
	p.ready(seqs[3], answerPuback, false) // 4 and 5 go
	if got, want := r.all(), pubackBytes(1, 2, 4, 5); !bytes.Equal(got, want) {
		t.Fatalf("wrote % x, want % x", got, want)
	}
	if len(r.writes) != 2 {
		t.Fatalf("%d writes, want 2 (one per batch): % x", len(r.writes), r.writes)
	}
	if n := len(p.slots); n != 0 {
		t.Fatalf("%d slots still taken after every PUBLISH was answered", n)
	}
}

// TestPubacksFailure: after a failed PUBLISH (the stream refused it),
// neither it nor any later one is acknowledged, even those the stream
// took, and the reader waiting for room is released.
func TestPubacksFailure(t *testing.T) {
	var r pubackRecorder
	p := newPubacks(2, r.write, make(chan struct{}), inline)
	s1, _ := p.reserve(1)
	s2, _ := p.reserve(2)
	p.ready(s1, answerPuback, false)
	s3, _ := p.reserve(3) // room again: 1 was written
	p.fail()              // 2 failed
	p.ready(s3, answerPuback, false)
	p.ready(s2, answerPuback, false)
	if got, want := r.all(), pubackBytes(1); !bytes.Equal(got, want) {
		t.Fatalf("wrote % x, want % x", got, want)
	}
	if _, ok := p.reserve(4); ok {
		t.Fatal("reserve after a failure accepted a PUBLISH")
	}
}

// TestPubacksWriteError: a failed write ends the queue.
func TestPubacksWriteError(t *testing.T) {
	r := pubackRecorder{err: errors.New("broken pipe")}
	p := newPubacks(4, r.write, make(chan struct{}), inline)
	s1, _ := p.reserve(1)
	s2, _ := p.reserve(2)
	p.ready(s1, answerPuback, false)
	p.ready(s2, answerPuback, false)
	if len(r.writes) != 1 {
		t.Fatalf("%d writes after a failed one, want 1", len(r.writes))
	}
	if _, ok := p.reserve(3); ok {
		t.Fatal("reserve after a failed write accepted a PUBLISH")
	}
}

// TestPubacksBackpressure: the reader waits for room once the limit of
// PUBLISHes is in flight, until the first is answered.
func TestPubacksBackpressure(t *testing.T) {
	var r pubackRecorder
	p := newPubacks(1, r.write, make(chan struct{}), inline)
	s1, _ := p.reserve(1)
	got := make(chan uint64)
	go func() {
		s, _ := p.reserve(2)
		got <- s
	}()
	select {
	case <-got:
		t.Fatal("a second PUBLISH was taken with one in flight and a limit of 1")
	default:
	}
	p.ready(s1, answerPuback, false)
	if s2 := <-got; s2 != s1+1 {
		t.Fatalf("second sequence %d, want %d", s2, s1+1)
	}
}

// TestGoGroupStop: once stopped, a group starts nothing.
func TestGoGroupStop(t *testing.T) {
	var g goGroup
	ran := make(chan struct{})
	if !g.goFunc(func() { close(ran) }) {
		t.Fatal("goFunc refused before stop")
	}
	<-ran
	g.stop()
	if g.goFunc(func() { t.Error("ran after stop") }) {
		t.Fatal("goFunc accepted after stop")
	}
}
