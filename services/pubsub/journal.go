package pubsub

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// The ack journal makes an exactly-once ack stick across a crash.
//
// JetStream answers an AckSync once the consumer has the ack in memory; a
// file-backed consumer writes its state to disk on a flush loop (at most
// ten writes a second), and nats-server has no setting that makes that
// write synchronous for a single-replica consumer (sync_interval: always
// fsyncs stream messages, not consumer state). A process killed in that
// window redelivers, after its restart, messages whose ack it confirmed.
//
// So before confirming an exactly-once ack, the server writes the acked
// stream sequences to a JetStream stream (messages are written to the file
// before JetStream acknowledges a publish): one message per ack call on
// <stream>.<life>.<consumer>, life being random per process run. A later
// run loads every entry at startup; a delivery of a loaded sequence is
// acked again instead of being handed to the client. The set stays small:
// an entry of the running life is purged once JetStream has certainly
// flushed the consumer's state (journalSafeAfter later, when the NATS
// connection did not reconnect meanwhile), and a loaded one once the
// consumer's ack floor passed it, or its consumer is gone. The stream's
// MaxAge (the longest retention a subscription has) bounds the rest.
const (
	// journalSafeAfter is how long after an ack JetStream has written the
	// consumer's state: its flush loop writes within 100 ms, ten times
	// over for a busy disk.
	journalSafeAfter = 10 * time.Second
	// journalTick is how often entries are trimmed.
	journalTick = time.Second
	// maxJournaled bounds the sequences loaded at startup and kept in
	// memory; beyond it a warning is logged and the rest is not filtered.
	maxJournaled = 1_000_000
)

// DefaultAckJournal is the ack journal's stream name for the bus's
// default stream (the journal of stream X is X_ACKS).
const DefaultAckJournal = "PASSERELLE_PUBSUB_ACKS"

type journalMark struct {
	at  time.Time
	seq uint64 // the journal's last sequence of this life then
}

type ackJournal struct {
	logger   *slog.Logger
	js       jetstream.JetStream
	nc       *nats.Conn
	stream   string
	replicas int

	mu   sync.Mutex
	life string
	last uint64 // the journal sequence of this life's latest entry
	// marks are (time, last) pairs, oldest first, for trimming.
	marks      []journalMark
	purged     uint64 // this life's entries are purged below this
	reconnects uint64
	// loaded are the sequences of earlier lives (or of this one before a
	// reconnect), per consumer, and lives their subject tokens.
	loaded  map[string]map[uint64]struct{}
	lives   map[string]struct{}
	emptyAt time.Time // when loaded last became empty
	count   atomic.Int64
}

func newAckJournal(logger *slog.Logger, js jetstream.JetStream, nc *nats.Conn, stream string, replicas int) *ackJournal {
	return &ackJournal{logger: logger, js: js, nc: nc, stream: stream, replicas: replicas, life: nuid.Next(),
		loaded: make(map[string]map[uint64]struct{}), lives: make(map[string]struct{})}
}

// open creates the journal's stream if needed and loads its entries.
func (j *ackJournal) open(ctx context.Context) error {
	st, err := j.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        j.stream,
		Description: "Passerelle Pub/Sub: exactly-once acks confirmed to clients, until JetStream has them on disk",
		Subjects:    []string{j.stream + ".>"},
		Storage:     jetstream.FileStorage,
		Replicas:    j.replicas,
		MaxAge:      maxSubRetention,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
	})
	if err != nil {
		return fmt.Errorf("create the ack journal %s: %w", j.stream, err)
	}
	j.reconnects = j.nc.Stats().Reconnects
	end := st.CachedInfo().State.LastSeq
	if st.CachedInfo().State.Msgs == 0 {
		return nil
	}
	oc, err := j.js.OrderedConsumer(ctx, j.stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return fmt.Errorf("read the ack journal %s: %w", j.stream, err)
	}
	n := 0
	for {
		batch, err := oc.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return fmt.Errorf("read the ack journal %s: %w", j.stream, err)
		}
		got, done := 0, false
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			n += j.load(m.Subject(), m.Data())
			if md.Sequence.Stream >= end {
				done = true
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("read the ack journal %s: %w", j.stream, err)
		}
		if done || got == 0 {
			break
		}
	}
	if n > 0 {
		j.logger.Info("pubsub: loaded exactly-once acks of an earlier run; their redeliveries will be acked, not delivered",
			"journal", j.stream, "acks", n)
	}
	return nil
}

// load adds an entry's sequences to loaded; it returns how many.
func (j *ackJournal) load(subject string, data []byte) int {
	rest, ok := strings.CutPrefix(subject, j.stream+".")
	life, consumer, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 {
		return 0
	}
	seqs := decodeSeqs(data)
	j.mu.Lock()
	defer j.mu.Unlock()
	j.lives[life] = struct{}{}
	return j.addLoaded(consumer, seqs)
}

// addLoaded adds seqs to loaded (j.mu held).
func (j *ackJournal) addLoaded(consumer string, seqs []uint64) int {
	set := j.loaded[consumer]
	if set == nil {
		set = make(map[uint64]struct{}, len(seqs))
		j.loaded[consumer] = set
	}
	n := 0
	for _, q := range seqs {
		if j.count.Load() >= maxJournaled {
			j.logger.Warn("pubsub: too many journaled acks; further ones of an earlier run may be redelivered", "max", maxJournaled)
			break
		}
		if _, ok := set[q]; !ok {
			set[q] = struct{}{}
			j.count.Add(1)
			n++
		}
	}
	return n
}

func encodeSeqs(seqs []uint64) []byte {
	b := make([]byte, 0, len(seqs)*4)
	for _, q := range seqs {
		b = binary.AppendUvarint(b, q)
	}
	return b
}

func decodeSeqs(b []byte) []uint64 {
	var out []uint64
	for len(b) > 0 {
		q, n := binary.Uvarint(b)
		if n <= 0 {
			break
		}
		out = append(out, q)
		b = b[n:]
	}
	return out
}

// record journals that consumer's seqs were acked. It returns once
// JetStream has the entry.
func (j *ackJournal) record(ctx context.Context, consumer string, seqs []uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	j.mu.Lock()
	life := j.life
	j.mu.Unlock()
	ack, err := j.js.PublishMsg(ctx, &nats.Msg{Subject: j.stream + "." + life + "." + consumer, Data: encodeSeqs(seqs)},
		jetstream.WithExpectStream(j.stream))
	if err != nil {
		return err
	}
	j.mu.Lock()
	if life == j.life {
		j.last = max(j.last, ack.Sequence)
	} else { // written across a reconnect: keep it as if loaded
		j.addLoaded(consumer, seqs)
	}
	j.mu.Unlock()
	return nil
}

// seen reports whether consumer's seq is a journaled ack of an earlier
// run; true forgets it (the caller acks the message again).
func (j *ackJournal) seen(consumer string, seq uint64) bool {
	if j == nil || j.count.Load() == 0 {
		return false
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	set := j.loaded[consumer]
	if _, ok := set[seq]; !ok {
		return false
	}
	delete(set, seq)
	j.forgot(consumer, 1)
	return true
}

// forgot counts n sequences of consumer out (j.mu held).
func (j *ackJournal) forgot(consumer string, n int) {
	if len(j.loaded[consumer]) == 0 {
		delete(j.loaded, consumer)
	}
	if j.count.Add(-int64(n)) == 0 {
		j.emptyAt = time.Now()
	}
}

// drop forgets consumer's entries, in memory and in the stream: its
// subscription was deleted, or made to replay by Seek.
func (j *ackJournal) drop(ctx context.Context, consumer string) error {
	if j == nil {
		return nil
	}
	j.mu.Lock()
	if n := len(j.loaded[consumer]); n > 0 {
		clear(j.loaded[consumer])
		j.forgot(consumer, n)
	}
	j.mu.Unlock()
	st, err := j.js.Stream(ctx, j.stream)
	if err != nil {
		return err
	}
	return st.Purge(ctx, jetstream.WithPurgeSubject(j.stream+".*."+consumer))
}

// run trims the journal until ctx ends.
func (j *ackJournal) run(ctx context.Context, stream string) {
	t := time.NewTicker(journalTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := j.trim(ctx, stream); err != nil && ctx.Err() == nil {
			j.logger.Warn("pubsub: trimming the ack journal", "journal", j.stream, "err", err)
		}
	}
}

// trim purges the entries no longer needed.
func (j *ackJournal) trim(ctx context.Context, stream string) error {
	now := time.Now()
	j.mu.Lock()
	if r := j.nc.Stats().Reconnects; r != j.reconnects {
		// JetStream may have restarted and lost the acks of this life
		// not yet flushed: keep them as loaded ones, start a new life.
		j.reconnects = r
		j.lives[j.life] = struct{}{}
		j.life, j.last, j.marks, j.purged = nuid.Next(), 0, nil, 0
		j.mu.Unlock()
		return j.reload(ctx)
	}
	j.marks = append(j.marks, journalMark{at: now, seq: j.last})
	var upTo uint64
	for len(j.marks) > 0 && now.Sub(j.marks[0].at) >= journalSafeAfter {
		upTo = j.marks[0].seq
		j.marks = j.marks[1:]
	}
	life := j.life
	purgeLife := upTo > 0 && upTo+1 > j.purged
	if purgeLife {
		j.purged = upTo + 1
	}
	consumers := make([]string, 0, len(j.loaded))
	for c := range j.loaded {
		consumers = append(consumers, c)
	}
	var lives []string
	if j.count.Load() == 0 && len(j.lives) > 0 && now.Sub(j.emptyAt) >= journalSafeAfter {
		for l := range j.lives {
			lives = append(lives, l)
		}
		clear(j.lives)
	}
	j.mu.Unlock()

	st, err := j.js.Stream(ctx, j.stream)
	if err != nil {
		return err
	}
	if purgeLife {
		if err := st.Purge(ctx, jetstream.WithPurgeSubject(j.stream+"."+life+".>"), jetstream.WithPurgeSequence(upTo+1)); err != nil {
			return err
		}
	}
	for _, l := range lives {
		if err := st.Purge(ctx, jetstream.WithPurgeSubject(j.stream+"."+l+".>")); err != nil {
			return err
		}
	}
	// Loaded sequences at or below their consumer's ack floor are settled.
	for _, c := range consumers {
		info, err := j.js.Consumer(ctx, stream, c)
		floor := uint64(0)
		switch {
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			floor = ^uint64(0)
		case err != nil:
			return err
		default:
			floor = info.CachedInfo().AckFloor.Stream
		}
		j.mu.Lock()
		n := 0
		for q := range j.loaded[c] {
			if q <= floor {
				delete(j.loaded[c], q)
				n++
			}
		}
		if n > 0 {
			j.forgot(c, n)
		}
		j.mu.Unlock()
	}
	return nil
}

// reload reads the journal again after a reconnect: entries of this
// process's earlier life become loaded ones.
func (j *ackJournal) reload(ctx context.Context) error {
	return j.open(ctx)
}
