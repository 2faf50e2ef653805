package sqlstore

import (
	"context"
	"fmt"
)

// maxBatch bounds how many write transactions share one SQLite commit.
const maxBatch = 128

// writeOp is one write transaction waiting for the SQLite writer.
type writeOp struct {
	ctx  context.Context
	fn   func(x q) error
	done chan error
}

// batcher is SQLite's group commit. A commit in WAL mode with
// synchronous=FULL costs one fsync, which bounds a one-transaction-per-
// commit writer to the disk's fsync rate. The batcher runs the write
// transactions waiting at the same time one after the other inside one
// SQLite transaction, each in its own savepoint (so that one failing rolls
// back only itself), and acknowledges them all after the single commit.
// Each still sees the effects of those before it, as if run alone.
func (s *Store) batcher() {
	defer close(s.batcherDone)
	for {
		var first writeOp
		select {
		case first = <-s.ops:
		case <-s.closing:
			return
		}
		batch := []writeOp{first}
	fill:
		for len(batch) < maxBatch {
			select {
			case op := <-s.ops:
				batch = append(batch, op)
			default:
				break fill
			}
		}
		s.runBatch(batch)
	}
}

func (s *Store) runBatch(batch []writeOp) {
	// Statements run under a context no caller can cancel: interrupting a
	// statement makes SQLite roll back the whole transaction, the other
	// callers' work included.
	ctx := context.Background()
	results := make([]error, len(batch))
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		for _, op := range batch {
			op.done <- err
		}
		return
	}
	x := s.inTx(ctx, s.wdb, tx)
	defer x.prepareMissed() // deferred first: runs once the transaction ended
	for i, op := range batch {
		if err := op.ctx.Err(); err != nil {
			results[i] = err
			continue
		}
		if _, err := x.exec("SAVEPOINT op"); err != nil {
			results[i] = err
			continue
		}
		if err := op.fn(x); err != nil {
			results[i] = err
			if _, rerr := x.exec("ROLLBACK TO op"); rerr != nil {
				s.abort(tx, batch, fmt.Errorf("roll back to savepoint: %w", rerr))
				return
			}
		}
		if _, err := x.exec("RELEASE op"); err != nil {
			s.abort(tx, batch, fmt.Errorf("release savepoint: %w", err))
			return
		}
	}
	if err := tx.Commit(); err != nil {
		for i := range results {
			if results[i] == nil {
				results[i] = err
			}
		}
	}
	for i, op := range batch {
		op.done <- results[i]
	}
}

// abort fails every operation of a batch whose transaction broke.
func (s *Store) abort(tx interface{ Rollback() error }, batch []writeOp, err error) {
	_ = tx.Rollback()
	s.logger.Error("SQLite write batch failed", "error", err, "operations", len(batch))
	for _, op := range batch {
		op.done <- err
	}
}

// writeBatched hands a write transaction to the batcher and waits for its
// commit.
func (s *Store) writeBatched(ctx context.Context, fn func(x q) error) error {
	op := writeOp{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case s.ops <- op:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closing:
		return fmt.Errorf("sqlstore: store closed")
	}
	// Once queued the operation may commit: wait for the outcome even if
	// ctx ends, so that the caller never reports a failure for a write
	// that happened.
	return <-op.done
}
