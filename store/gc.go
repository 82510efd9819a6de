package store

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// gcDiscardRatio is the share of a value-log file that must be garbage for
// GC to rewrite it. Badger recommends 0.5: a lifetime write amplification of
// about 2 for the value log.
const gcDiscardRatio = 0.5

// valueLogGC runs Badger's value-log GC every interval until Badger has
// nothing more to rewrite. It is a no-op when the interval is 0.
type valueLogGC struct {
	db       *badger.DB
	clog     *commitLog // nil without SyncWrites
	interval time.Duration
	log      *slog.Logger
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	runs     atomic.Int64 // completed GC passes, for tests
}

func startValueLogGC(db *badger.DB, clog *commitLog, interval time.Duration, log *slog.Logger) *valueLogGC {
	ctx, cancel := context.WithCancel(context.Background())
	g := &valueLogGC{db: db, clog: clog, interval: interval, log: log, cancel: cancel}
	if interval > 0 {
		g.wg.Add(1)
		go g.loop(ctx)
	}
	return g
}

// stop ends the loop and waits for it; a file rewrite in progress finishes
// first.
func (g *valueLogGC) stop() {
	g.cancel()
	g.wg.Wait()
}

func (g *valueLogGC) loop(ctx context.Context) {
	defer g.wg.Done()
	t := time.NewTicker(g.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.pass(ctx)
		}
	}
}

// pass rewrites value-log files until Badger finds none worth rewriting.
func (g *valueLogGC) pass(ctx context.Context) {
	defer g.runs.Add(1)
	start := time.Now()
	rewritten := 0
	for ctx.Err() == nil {
		err := g.rewriteOne(ctx)
		if err == nil {
			rewritten++
			continue
		}
		// ErrNoRewrite: nothing to do. ErrRejected: a GC or a drop is
		// already running. Anything else is worth a warning.
		if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
			g.log.Warn("value-log gc failed", "op", "gc", "err", err.Error())
		}
		break
	}
	if rewritten > 0 {
		g.log.Debug("value-log gc", "op", "gc", "files", rewritten, "took", time.Since(start))
	}
}

// rewriteOne runs one Badger value-log GC. Badger moves the live values of
// the file it picks through its own write path, which does not sync (the
// store runs it without SyncWrites), and then deletes the file. With a
// commit log, the moved values were logged long ago, so they must be
// durable before the file goes: an open iterator makes Badger defer the
// deletion until the iterator closes, and it closes once Badger's files
// are synced. If they cannot be (the disk fails its fsyncs), the iterator
// stays open while the sync is retried, until the store closes.
func (g *valueLogGC) rewriteOne(ctx context.Context) error {
	if g.clog == nil {
		return g.db.RunValueLogGC(gcDiscardRatio)
	}
	txn := g.db.NewTransactionAt(math.MaxUint64, false)
	it := txn.NewIterator(badger.IteratorOptions{})
	err := g.db.RunValueLogGC(gcDiscardRatio)
	if err != nil {
		it.Close()
		txn.Discard()
		return err
	}
	for {
		derr := g.clog.durableBadger()
		if derr == nil {
			it.Close()
			txn.Discard()
			return nil
		}
		g.log.Warn("value-log gc: cannot sync the moved values, so their old file is kept; retrying",
			"op", "gc", "err", derr.Error())
		select {
		case <-ctx.Done():
			it.Close()
			txn.Discard()
			return nil
		case <-time.After(checkpointRetry):
		}
	}
}
