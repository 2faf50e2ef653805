package hub

import (
	"context"
	"time"
)

// statePacer keeps one device's states (or the gateway's own) on its
// connection at most one per StateInterval, as the bridge takes them.
// The bridge times a state when it reads it, which is before the hub
// reads its PUBACK: a state sent StateInterval after the previous one's
// PUBACK reaches the bridge at least that long after it, whatever the
// delays before (a caller's queue, a relay, a gateway move) did to the
// spacing the caller kept.
type statePacer struct {
	turn chan struct{} // held by the one state being sent
	last time.Time     // the end of the previous state's send (under turn)
}

func newStatePacer() *statePacer { return &statePacer{turn: make(chan struct{}, 1)} }

// wait takes the pacer's turn once StateInterval has passed since the
// previous state's send ended (its PUBACK, or its failure: the bridge may
// have read it all the same); done gives the turn back, sent telling
// whether the state went out at all. stop ends the wait (the connection
// stops) with stopErr's answer.
func (s *statePacer) wait(ctx context.Context, stop <-chan struct{}, stopErr func() error) (done func(sent bool), err error) {
	select {
	case s.turn <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-stop:
		return nil, stopErr()
	}
	done = func(sent bool) {
		if sent {
			s.last = time.Now()
		}
		<-s.turn
	}
	if d := time.Until(s.last.Add(StateInterval)); !s.last.IsZero() && d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			done(false)
			return nil, ctx.Err()
		case <-stop:
			done(false)
			return nil, stopErr()
		}
	}
	return done, nil
}
