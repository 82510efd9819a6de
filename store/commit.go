package store

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/ringkv/ringkv/dht"
)

// Group commit.
//
// Badger batches concurrent transaction commits into one write of its
// logs, but it still writes each transaction's entries into its memtable
// on its own, and a durable commit costs a sync however small it is. The
// committer closes that gap: writers queue their mutations, one goroutine
// drains the queue into a single Badger transaction, appends it to the
// commit log (commitlog.go) with one fdatasync and commits it, so a group
// of concurrent writes costs one commit and one fdatasync. Writers
// arriving during a commit form the next group. Measured with SyncWrites
// (BenchmarkPutParallel and BenchmarkPut): 50 writers make about 130,000
// puts a second in groups of 24, one writer 6,300.
//
// Each request stays atomic: its mutations go into one transaction
// together. A group that outgrows Badger's transaction limit is committed up
// to the last request that fits, and the rest forms the next transaction.

const (
	// maxGroupMutations bounds one group's mutation count (Badger's own
	// count limit is far higher at the default memtable size).
	maxGroupMutations = 4096
	// maxGroupBytes bounds the value bytes of one group, so a few large
	// records do not delay everyone queued behind them. A single request
	// larger than this still commits, alone.
	maxGroupBytes = 16 * mib
	// commitQueueLen is the queue capacity; writers block when it is full.
	commitQueueLen = 1024
)

// mutation is one Set or Delete of a Badger key.
type mutation struct {
	key   []byte // Badger key (namespaced)
	value []byte // nil for a delete
	del   bool
	// rec is the decoded record for the record cache, owned by the
	// mutation; nil when the record is not to be cached.
	rec *dht.Record
}

// commitReq is one caller's atomic set of mutations.
type commitReq struct {
	muts  []mutation
	bytes int        // value bytes, for group sizing
	done  chan error // buffered 1: the committer never blocks on it
}

// committer owns the goroutine that turns queued requests into Badger
// commits.
type committer struct {
	db    *badger.DB
	clog  *commitLog // nil without SyncWrites
	vers  *versions
	cache *recordCache
	log   *slog.Logger
	queue chan *commitReq
	quit  chan struct{} // closed by stop; never send on queue after stop
	wg    sync.WaitGroup

	commits  atomic.Int64 // Badger transactions committed (or attempted)
	requests atomic.Int64 // requests those transactions carried
	busy     atomic.Int64 // nanoseconds spent committing: the log append and fdatasync, and Badger's commit

	// afterCommit, when set (by tests, before the commits it is to see),
	// runs on the committer after each Badger commit and before the
	// record cache is updated.
	afterCommit func()
	// logOnly, when set (by tests, before the commits it is to affect),
	// makes commits stop after the commit log: Badger never sees them.
	logOnly bool
}

func newCommitter(db *badger.DB, clog *commitLog, vers *versions, cache *recordCache, log *slog.Logger) *committer {
	c := &committer{
		db:    db,
		clog:  clog,
		vers:  vers,
		cache: cache,
		log:   log,
		queue: make(chan *commitReq, commitQueueLen),
		quit:  make(chan struct{}),
	}
	c.wg.Add(1)
	go c.run()
	return c
}

// submit queues muts as one atomic commit and waits for its result. If ctx
// ends first it returns ctx's error; the mutations may still be committed.
func (c *committer) submit(ctx context.Context, muts []mutation) error {
	r := newCommitReq(muts)
	if err := c.enqueue(ctx, r); err != nil {
		return err
	}
	return c.wait(ctx, r)
}

func newCommitReq(muts []mutation) *commitReq {
	r := &commitReq{muts: muts, done: make(chan error, 1)}
	for _, m := range muts {
		r.bytes += len(m.value)
	}
	return r
}

// enqueue queues r, unless ctx ends first.
func (c *committer) enqueue(ctx context.Context, r *commitReq) error {
	select {
	case c.queue <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wait returns r's result, or ctx's error if ctx ends first (r may still
// be committed).
func (c *committer) wait(ctx context.Context, r *commitReq) error {
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop commits whatever is queued and ends the goroutine. The caller
// guarantees that no submit is running or will start.
func (c *committer) stop() {
	close(c.quit)
	c.wg.Wait()
}

func (c *committer) run() {
	defer c.wg.Done()
	for {
		select {
		case r := <-c.queue:
			c.commitGroup(c.gather(r))
		case <-c.quit:
			for {
				select {
				case r := <-c.queue:
					c.commitGroup(c.gather(r))
				default:
					return
				}
			}
		}
	}
}

// gather returns first plus whatever else is queued, within the group bounds.
func (c *committer) gather(first *commitReq) []*commitReq {
	group := []*commitReq{first}
	n, size := len(first.muts), first.bytes
	for n < maxGroupMutations && size < maxGroupBytes {
		select {
		case r := <-c.queue:
			group = append(group, r)
			n += len(r.muts)
			size += r.bytes
		default:
			return group
		}
	}
	return group
}

// commitGroup commits the group in as few transactions as Badger's limits
// allow and reports each request's result.
func (c *committer) commitGroup(group []*commitReq) {
	for len(group) > 0 {
		n := c.commitPrefix(group)
		group = group[n:]
	}
}

// commitPrefix commits the longest prefix of group that fits in one
// transaction, reports the results of the requests it consumed, and returns
// their number (at least 1).
func (c *committer) commitPrefix(group []*commitReq) int {
	txn := c.vers.newWrite()
	for i, r := range group {
		err := addMutations(txn, r.muts)
		if err == nil {
			continue
		}
		txn.Discard()
		if i > 0 {
			c.commitAll(group[:i]) // rebuild without the partial request i
			if errors.Is(err, badger.ErrTxnTooBig) {
				return i // request i goes first in the next transaction
			}
		}
		r.done <- opError("commit", err) // too big alone, or invalid
		return i + 1
	}
	c.commit(group, txn)
	return len(group)
}

// commitAll commits requests known to fit in one transaction.
func (c *committer) commitAll(group []*commitReq) {
	txn := c.vers.newWrite()
	for _, r := range group {
		if err := addMutations(txn, r.muts); err != nil {
			txn.Discard()
			c.finish(group, err) // not expected: they fitted a moment ago
			return
		}
	}
	c.commit(group, txn)
}

// commit makes txn, which holds group's mutations, durable in the commit
// log if there is one, commits it at the next timestamp (see versions.go)
// and reports the outcome. The group's keys
// leave the record cache first: while Badger makes the new records
// visible, and until finish caches them, a Get of those keys reads
// Badger, which never goes back; a cached older record could be returned
// after another Get had already read the new one there.
func (c *committer) commit(group []*commitReq, txn *badger.Txn) {
	for _, r := range group {
		for _, m := range r.muts {
			c.cache.drop(m.key)
		}
	}
	start := time.Now()
	if c.clog != nil {
		if err := c.clog.append(group); err != nil {
			txn.Discard()
			c.busy.Add(int64(time.Since(start)))
			c.finish(group, err)
			return
		}
		if c.logOnly {
			txn.Discard()
			c.finish(group, nil)
			return
		}
	}
	ts := c.vers.next()
	err := txn.CommitAt(ts, nil)
	c.busy.Add(int64(time.Since(start)))
	c.vers.committed(ts)
	if c.clog != nil {
		c.clog.recordApplied(c.clog.seq) // only this goroutine changes seq
	}
	if c.afterCommit != nil {
		c.afterCommit()
	}
	c.finish(group, err)
}

// finish updates the record cache with the outcome of one Badger commit
// (see cache.go) and reports it to the requests it carried.
func (c *committer) finish(group []*commitReq, err error) {
	c.commits.Add(1)
	c.requests.Add(int64(len(group)))
	for _, r := range group {
		for _, m := range r.muts {
			if err == nil && m.rec != nil {
				c.cache.set(m.key, m.rec)
			} else {
				c.cache.drop(m.key)
			}
		}
	}
	err = opError("commit", err)
	if err != nil {
		c.log.Warn("store commit failed", "op", "commit", "requests", len(group), "err", err)
	}
	for _, r := range group {
		r.done <- err
	}
}

// addMutations adds muts to txn. Badger keeps pointers to the entries and
// rewrites their keys on commit, so each attempt builds fresh entries.
func addMutations(txn *badger.Txn, muts []mutation) error {
	for _, m := range muts {
		var err error
		if m.del {
			err = txn.Delete(m.key)
		} else {
			err = txn.SetEntry(&badger.Entry{Key: m.key, Value: m.value})
		}
		if err != nil {
			return err
		}
	}
	return nil
}
